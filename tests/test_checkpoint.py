"""Checkpoints: atomic writes, weights-only loading, exact resume, incompatible models."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.algorithms import MAML, MetaSGD
from metalearn_edu.checkpoint import load_checkpoint, save_checkpoint
from metalearn_edu.models import MLP, sinusoid_mlp
from metalearn_edu.tasks.sinusoid import SinusoidTasks
from metalearn_edu.training import meta_train


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _train(path, iterations, resume=False, algorithm=None):
    return meta_train(
        algorithm or MAML(sinusoid_mlp(), inner_lr=0.05),
        SinusoidTasks(),
        iterations,
        meta_batch_size=4,
        seed=7,
        checkpoint_path=path,
        resume=resume,
        config={"preset": "test"},
        progress=False,
    )


def test_resuming_gives_the_same_result_as_not_stopping(tmp_path):
    straight = _train(tmp_path / "straight.pt", 6)
    _train(tmp_path / "split.pt", 3)
    resumed = _train(tmp_path / "split.pt", 6, resume=True)
    assert resumed.iteration == 6
    for name, p in straight.meta_params.items():
        assert torch.equal(p, resumed.meta_params[name]), name
    np.testing.assert_equal(straight.history, resumed.history)  # NaN accuracies compare equal
    saved = load_checkpoint(tmp_path / "split.pt")
    assert saved["iteration"] == 6 and saved["config"] == {"preset": "test"}


def test_checkpoint_loads_with_weights_only_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "run" / "ckpt.pt"
    _train(path, 2)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    state = torch.load(path, weights_only=True)
    assert set(state) >= {"meta_params", "optimizer", "generator", "iteration", "history"}


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"iteration": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"iteration": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_checkpoint_from_an_incompatible_model_is_refused_clearly(tmp_path):
    path = tmp_path / "ckpt.pt"
    _train(path, 1)
    wider = MAML(MLP((1, 64, 64, 1)), inner_lr=0.05)
    with pytest.raises(ValueError, match=r"layer0.weight has shape \(40, 1\) in the checkpoint"):
        _train(path, 2, resume=True, algorithm=wider)
    with pytest.raises(ValueError, match=r"missing parameters \['inner_lr.layer0.bias'"):
        _train(path, 2, resume=True, algorithm=MetaSGD(sinusoid_mlp(), inner_lr=0.05))


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable metalearn_edu checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match=r"not a metalearn_edu\.checkpoint/1 checkpoint"):
        load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
