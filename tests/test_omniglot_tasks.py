"""N-way K-shot sampling, rotations, splits and bad input, on a small in-memory Omniglot."""

from __future__ import annotations

import random

import pytest
import torch

from metalearn_edu.data import Omniglot, split_characters
from metalearn_edu.tasks import OmniglotTasks, TaskDistribution, omniglot_splits


def fake_omniglot(bg_alphabets: int = 6, eval_alphabets: int = 2, characters: int = 5) -> Omniglot:
    """Random uint8 images: every (character, drawing, rotation) is a different picture."""
    names, background = [], []
    for a in range(bg_alphabets + eval_alphabets):
        for c in range(1, characters + 1):
            names.append(f"alphabet{a}/character{c:02d}")
            background.append(a < bg_alphabets)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(names), 20, 28, 28), dtype=torch.uint8, generator=g)
    return Omniglot(images, tuple(names), torch.tensor(background))


@pytest.fixture(scope="module")
def data() -> Omniglot:
    return fake_omniglot()


def identify(image: torch.Tensor, sampler: OmniglotTasks) -> tuple[int, int, int]:
    """(character within the split, drawing, quarter turns) of a sampled float image."""
    pixels = (image[0] * 255).round().to(torch.uint8)
    for k in range(4):
        match = (sampler.images == torch.rot90(pixels, -k, dims=(-2, -1))).flatten(2).all(-1)
        hits = match.nonzero()
        if len(hits):
            return int(hits[0, 0]), int(hits[0, 1]), k
    raise AssertionError("sampled image not found in the split")


@pytest.mark.parametrize("rotations", ["augment", "classes", "none"])
def test_episode_structure(data, rotations):
    N, K, Q = 4, 2, 3
    sampler = OmniglotTasks("train", N, K, Q, rotations, "lake", data=data)
    assert isinstance(sampler, TaskDistribution)
    e = sampler.sample(3, torch.Generator().manual_seed(1))
    assert e.support_x.shape == (3, N * K, 1, 28, 28) and e.support_x.dtype == torch.float32
    assert e.query_x.shape == (3, N * Q, 1, 28, 28)
    assert e.support_y.dtype == torch.int64
    assert e.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert e.query_y[2].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert 0.0 <= e.support_x.min() and e.support_x.max() <= 1.0
    for t in range(3):
        seen = {}
        xs = torch.cat([e.support_x[t], e.query_x[t]])
        ys = torch.cat([e.support_y[t], e.query_y[t]])
        for x, y in zip(xs, ys, strict=True):
            char, drawing, turns = identify(x, sampler)
            seen.setdefault(int(y), []).append((char, drawing, turns))
        classes = set()
        for found in seen.values():
            chars = {c for c, _, _ in found}
            turns = {k for _, _, k in found}
            drawings = [d for _, d, _ in found]
            assert len(chars) == 1 and len(turns) == 1  # one class = one character, one rotation
            assert len(set(drawings)) == K + Q  # support and query drawings are all different
            if rotations == "none":
                assert turns == {0}
            classes.add((chars.pop(), turns.pop()))
        assert len(classes) == N  # N different classes per task


def test_augmentation_uses_all_four_rotations(data):
    sampler = OmniglotTasks("train", 5, 1, 1, "augment", "lake", data=data)
    e = sampler.sample(16, torch.Generator().manual_seed(2))
    turns = {identify(x, sampler)[2] for x in e.support_x.flatten(0, 1)}
    assert turns == {0, 1, 2, 3}


def test_rotations_as_classes_quadruple_the_classes(data):
    plain = OmniglotTasks("train", 5, 1, 1, "augment", "lake", data=data)
    rotated = OmniglotTasks("train", 5, 1, 1, "classes", "lake", data=data)
    assert rotated.num_classes == 4 * plain.num_classes
    assert rotated.class_name(5).endswith("/rot090")


def test_same_seed_same_episode(data):
    sampler = OmniglotTasks("train", 5, 1, 5, data=data, convention="lake")
    a = sampler.sample(4, torch.Generator().manual_seed(3))
    b = sampler.sample(4, torch.Generator().manual_seed(3))
    c = sampler.sample(4, torch.Generator().manual_seed(4))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert not torch.equal(a.support_x, c.support_x)


def test_splits_share_one_cache_and_are_disjoint(data):
    samplers = omniglot_splits(5, 1, 1, convention="lake", data=data)
    ids = [set(s.character_ids) for s in samplers.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(data.characters)


def test_lake_split_holds_out_whole_alphabets(data):
    parts = split_characters(data.characters, data.background.tolist(), "lake")
    alphabets = {k: {data.characters[i].split("/")[0] for i in v} for k, v in parts.items()}
    assert alphabets["test"] == {"alphabet6", "alphabet7"}  # the evaluation alphabets
    assert len(alphabets["val"]) == 1 and not alphabets["val"] & alphabets["train"]


def test_maml_split_sizes_and_order_independence():
    names = [f"alphabet{i // 40}/character{i % 40:02d}" for i in range(1623)]
    background = [i < 964 for i in range(1623)]
    parts = split_characters(names, background, "maml")
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1100, 100, 423]
    shuffled = list(range(1623))
    random.Random(5).shuffle(shuffled)
    again = split_characters(
        [names[i] for i in shuffled], [background[i] for i in shuffled], "maml"
    )
    for split in parts:  # same characters whatever order the folders were listed in
        assert {names[i] for i in parts[split]} == {names[shuffled[i]] for i in again[split]}
    with pytest.raises(ValueError, match="more than 1200"):
        split_characters(names[:1000], background[:1000], "maml")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"ways": 26}, ["ways=26", "25 classes"]),
        ({"shots": 15, "queries": 6}, ["21", "20 drawings"]),
        ({"ways": 0}, ["ways", "positive"]),
        ({"shots": -1}, ["shots", "positive"]),
        ({"queries": 0}, ["queries", "positive"]),
        ({"split": "validation"}, ["split", "'train', 'val', 'test'"]),
        ({"rotations": "random"}, ["rotations"]),
        ({"convention": "vinyals"}, ["convention"]),
    ],
)
def test_bad_input(data, kwargs, words):
    args = {"convention": "lake", "data": data, **kwargs}
    with pytest.raises(ValueError) as info:
        OmniglotTasks(**args)
    for word in words:
        assert word in str(info.value)


def test_bad_meta_batch_size(data):
    with pytest.raises(ValueError, match="meta_batch_size"):
        OmniglotTasks(convention="lake", data=data).sample(0)


def test_bench_fallback_training_step_runs(data):
    from metalearn_edu.bench_sampler import _step_with_torch_func

    sampler = OmniglotTasks("train", 3, 1, 1, convention="lake", data=data)
    step = _step_with_torch_func(ways=3, inner_steps=1, inner_lr=0.4)
    step(sampler.sample(2, torch.Generator().manual_seed(0)))  # a second-order step, no error


def test_splits_load_the_cache_with_the_requested_preprocessing(data, monkeypatch):
    import metalearn_edu.tasks.omniglot as module

    calls = []

    def fake_load(root=None, cache_dir=None, resize="lanczos"):
        calls.append(resize)
        return data

    monkeypatch.setattr(module, "load_omniglot", fake_load)
    splits = omniglot_splits(convention="lake", resize="maml-code")
    assert calls == ["maml-code"] and set(splits) == {"train", "val", "test"}
