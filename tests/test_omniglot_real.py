"""The real Omniglot archives (../shared/data/omniglot or $METALEARN_EDU_OMNIGLOT), skipped without
them. The cache is built once for this session in a temporary folder (about 5 s)."""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_edu.config import OMNIGLOT_ENV
from metalearn_edu.data import load_omniglot, locate_archives, split_characters
from metalearn_edu.data.omniglot import ARCHIVES, _to_28x28
from metalearn_edu.tasks import OmniglotTasks

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
ROOT = Path(os.environ[OMNIGLOT_ENV]) if os.environ.get(OMNIGLOT_ENV) else SHARED
pytestmark = pytest.mark.skipif(
    not all((ROOT / name).is_file() for name in ARCHIVES),
    reason=f"the Omniglot archives are not in {ROOT} (set {OMNIGLOT_ENV} to their folder)",
)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("omniglot_cache")


@pytest.fixture(scope="session")
def omniglot(cache_dir):
    return load_omniglot(ROOT, cache_dir=cache_dir, progress=False)


def test_archives_pass_verification():
    found = locate_archives(ROOT)  # the default checksums: official or known repack
    assert sorted(found) == sorted(ARCHIVES)


def test_counts(omniglot):
    assert omniglot.counts() == {
        "background": {"alphabets": 30, "characters": 964, "images": 19_280},
        "evaluation": {"alphabets": 20, "characters": 659, "images": 13_180},
    }
    assert omniglot.images.shape == (1623, 20, 28, 28)
    assert len(set(omniglot.characters)) == 1623
    assert not set(omniglot.alphabet_names(True)) & set(omniglot.alphabet_names(False))


def test_images_are_ink_one_background_zero(omniglot):
    x = omniglot.images.float() / 255
    assert x[:, :, 0, :].mean() < 0.01  # the border is background
    assert 0.03 < x.mean() < 0.3  # strokes are a small part of the picture
    # the same as the MAML input 1 - png / 255 after resizing one PNG directly
    with zipfile.ZipFile(ROOT / ARCHIVES[0]) as zf:
        name = sorted(n for n in zf.namelist() if n.endswith(".png"))[0]
        png = zf.read(name)
    small = np.asarray(Image.open(io.BytesIO(png)).convert("L").resize((28, 28), Image.LANCZOS))
    expected = 1 - small / 255
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1 / 255 + 1e-6)
    assert set(np.unique(_to_28x28(png, "maml-code")).tolist()) == {0, 255}


def test_cache_loads_fast_without_archives(omniglot, cache_dir):
    start = time.perf_counter()
    again = load_omniglot(cache_dir.parent / "no_archives_here", cache_dir=cache_dir)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(again.images, omniglot.images)


@pytest.mark.parametrize("convention, sizes", [("maml", (1100, 100, 423)), ("lake", None)])
def test_no_character_is_in_two_splits(omniglot, convention, sizes):
    parts = split_characters(omniglot.characters, omniglot.background.tolist(), convention)
    train, val, test = (set(parts[s]) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(1623))
    if sizes:
        assert (len(train), len(val), len(test)) == sizes
    else:  # lake: test = the 659 evaluation characters, val = 5 whole background alphabets
        assert len(test) == 659 and not omniglot.background[sorted(test)].any()
        val_alphabets = {omniglot.alphabets[i] for i in val}
        assert len(val_alphabets) == 5
        assert not val_alphabets & {omniglot.alphabets[i] for i in train}


def test_maml_split_is_pinned(omniglot):
    """random.Random(1).shuffle of the sorted names, cut at 1100 and 1200 (see splits.py)."""
    parts = split_characters(omniglot.characters, omniglot.background.tolist(), "maml")
    names = sorted(omniglot.characters)
    random.Random(1).shuffle(names)
    assert names[:3] == ["Gurmukhi/character23", "Malayalam/character36", "Tifinagh/character36"]
    assert {omniglot.characters[i] for i in parts["train"]} == set(names[:1100])
    assert {omniglot.characters[i] for i in parts["val"]} == set(names[1100:1200])
    assert "Keble/character04" in {omniglot.characters[i] for i in parts["test"]}


@pytest.mark.parametrize("ways, shots, queries, batch", [(5, 1, 15, 32), (20, 5, 15, 16)])
def test_sampling_real_episodes(omniglot, ways, shots, queries, batch):
    sampler = OmniglotTasks("train", ways, shots, queries, data=omniglot)
    e = sampler.sample(batch, torch.Generator().manual_seed(0))
    assert e.support_x.shape == (batch, ways * shots, 1, 28, 28)
    assert e.query_x.shape == (batch, ways * queries, 1, 28, 28)
    assert e.query_y.shape == (batch, ways * queries) and int(e.query_y.max()) == ways - 1
    again = sampler.sample(batch, torch.Generator().manual_seed(0))
    assert torch.equal(e.query_x, again.query_x)


def test_limits_of_the_real_splits(omniglot):
    with pytest.raises(ValueError, match="ways=101 is larger than the 100 classes"):
        OmniglotTasks("val", ways=101, data=omniglot)
    assert OmniglotTasks("val", ways=101, rotations="classes", data=omniglot).num_classes == 400
    with pytest.raises(ValueError, match="20 drawings"):
        OmniglotTasks("test", shots=10, queries=11, data=omniglot)
