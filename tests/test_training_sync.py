"""The training loop reads metrics back from the device in batches (``sync_every``): the run and
its history are the same as reading every iteration, failures are still named by iteration and
never reach a checkpoint, and ``meta_gradient(sync=False)`` returns the same numbers as tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.algorithms import MAML, MetaSGD, Reptile
from metalearn_edu.checkpoint import load_checkpoint
from metalearn_edu.meta_lstm import MetaLSTM
from metalearn_edu.models import MLP, sinusoid_mlp
from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import SinusoidTasks
from metalearn_edu.training import make_optimizer, meta_train


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _run(sync_every, iterations=12, **kwargs):
    maml = MAML(sinusoid_mlp(), inner_lr=0.01, inner_steps=2)
    return meta_train(
        maml,
        SinusoidTasks(),
        iterations,
        meta_batch_size=3,
        meta_lr=0.01,
        progress=False,
        sync_every=sync_every,
        **kwargs,
    )


@pytest.mark.parametrize("sync_every", [5, 100])
def test_reading_back_in_batches_changes_nothing(sync_every):
    every = _run(1)
    batched = _run(sync_every, validation_tasks=SinusoidTasks(), validate_every=4)
    unvalidated = _run(sync_every)
    for key, values in every.history["train"].items():  # accuracies are NaN for regression
        np.testing.assert_array_equal(batched.history["train"][key], values)
        np.testing.assert_array_equal(unvalidated.history["train"][key], values)
    assert batched.history["train"]["iteration"] == list(range(12))
    for name, p in every.meta_params.items():
        assert torch.equal(batched.meta_params[name], p)
        assert torch.equal(unvalidated.meta_params[name], p)
    assert batched.history["validation"]["iteration"] == [4, 8, 12]


class _PoisonedAt:
    """Sinusoid tasks whose query targets become NaN from the ``bad``-th draw on."""

    def __init__(self, bad: int):
        self.tasks, self.bad, self.calls = SinusoidTasks(), bad, 0

    def sample(self, meta_batch_size, generator=None):
        episode = self.tasks.sample(meta_batch_size, generator=generator)
        self.calls += 1
        if self.calls <= self.bad:
            return episode
        query_y = episode.query_y.clone()
        query_y[0, 0] = math.nan
        return Episode(episode.support_x, episode.support_y, episode.query_x, query_y)


def test_a_non_finite_loss_in_a_batch_is_named_by_its_iteration_and_never_saved(tmp_path):
    path = tmp_path / "run.pt"
    maml = MAML(sinusoid_mlp(), inner_lr=0.01)
    with pytest.raises(FloatingPointError, match="iteration 7: the pre-adaptation query loss"):
        meta_train(
            maml,
            _PoisonedAt(7),
            20,
            meta_batch_size=2,
            progress=False,
            sync_every=50,
            checkpoint_path=path,
            checkpoint_every=5,
        )
    # the checkpoint at 5 iterations was written (its iterations were clean); none after
    saved = load_checkpoint(path)
    assert saved["iteration"] == 5
    assert all(math.isfinite(v) for v in saved["history"]["train"]["pre_loss"])
    assert all(torch.isfinite(p).all() for p in saved["meta_params"].values())


def test_a_non_finite_gradient_is_named_with_its_parameters():
    class NaNGradient(MAML):
        def meta_gradient(self, meta_params, episode, *, sync=True):
            grads, metrics = super().meta_gradient(meta_params, episode, sync=sync)
            grads["layer1.bias"] = torch.full_like(grads["layer1.bias"], math.nan)
            return grads, metrics

    model = MLP((1, 8, 1))
    assert "layer1.bias" in model.init()
    with pytest.raises(FloatingPointError, match=r"iteration 0: .*\['layer1.bias'\]"):
        meta_train(
            NaNGradient(model), SinusoidTasks(), 4, meta_batch_size=2, progress=False, sync_every=3
        )


def test_sync_every_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="sync_every"):
        _run(0)
    with pytest.raises(ValueError, match="sync_every"):
        _run(2.5)


@pytest.mark.parametrize(
    "algorithm",
    [
        MAML(sinusoid_mlp(), inner_lr=0.01),
        MetaSGD(sinusoid_mlp(), inner_lr=0.01),
        Reptile(sinusoid_mlp(), inner_lr=0.01, inner_steps=2),
    ],
    ids=["maml", "metasgd", "reptile"],
)
def test_unsynced_metrics_are_tensors_with_the_synced_values(algorithm):
    episode = SinusoidTasks().sample(3, generator=torch.Generator().manual_seed(0))
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    grads, floats = algorithm.meta_gradient(params, episode)
    grads_t, tensors = algorithm.meta_gradient(params, episode, sync=False)
    assert set(floats) == set(tensors) == {"pre_loss", "post_loss", "pre_accuracy", "post_accuracy"}
    for key, value in floats.items():
        assert isinstance(value, float) and isinstance(tensors[key], torch.Tensor)
        assert tensors[key].dim() == 0
        assert value == tensors[key].item() or (math.isnan(value) and tensors[key].isnan())
    for name in grads:
        assert torch.equal(grads[name], grads_t[name])


def test_meta_lstm_metrics_unsynced_too():
    from metalearn_edu.models import Conv4

    algorithm = MetaLSTM(Conv4(ways=2, hidden=4, transductive=False), inner_steps=1)
    gen = torch.Generator().manual_seed(0)
    episode = Episode(
        torch.rand(1, 2, 1, 28, 28, generator=gen),
        torch.tensor([[0, 1]]),
        torch.rand(1, 4, 1, 28, 28, generator=gen),
        torch.tensor([[0, 1, 0, 1]]),
    )
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    _, floats = algorithm.meta_gradient(params, episode)
    _, tensors = algorithm.meta_gradient(params, episode, sync=False)
    assert {k: v.item() for k, v in tensors.items()} == floats


def test_adam_is_fused_only_on_a_gpu():
    params = {"w": torch.zeros(3, requires_grad=True)}
    assert not make_optimizer(params, "adam", 1e-3).defaults["fused"]
    if torch.cuda.is_available():
        gpu = {"w": torch.zeros(3, device="cuda", requires_grad=True)}
        assert make_optimizer(gpu, "adam", 1e-3).defaults["fused"]


def test_a_time_limited_run_resumed_until_done_equals_one_uninterrupted_run(tmp_path):
    def run(**kwargs):
        return _run(
            3,
            iterations=7,
            validation_tasks=SinusoidTasks(),
            validate_every=3,
            validation_size=4,
            **kwargs,
        )

    whole = run()
    path, stops = tmp_path / "run.pt", []
    while not stops or stops[-1] < 7:
        # a limit this short stops after every iteration, checkpointing each time
        state = run(checkpoint_path=path, resume=True, time_limit_s=1e-9)
        stops.append(state.iteration)
    assert stops == [1, 2, 3, 4, 5, 6, 7]
    for name, p in whole.meta_params.items():
        assert torch.equal(state.meta_params[name], p)
    for part in ("train", "validation"):
        for key, values in whole.history[part].items():
            np.testing.assert_array_equal(state.history[part][key], values)
    assert whole.history["validation"]["iteration"] == [3, 6, 7]
    with pytest.raises(ValueError, match="time_limit_s"):
        run(time_limit_s=0)


def test_training_time_adds_up_over_resumed_pieces(tmp_path):
    path = tmp_path / "run.pt"
    first = _run(1, iterations=3, checkpoint_path=path)
    assert first.train_time_s > 0
    assert load_checkpoint(path)["train_time_s"] == first.train_time_s
    second = _run(1, iterations=6, checkpoint_path=path, resume=True)
    assert second.iteration == 6 and second.train_time_s > first.train_time_s
    assert load_checkpoint(path)["train_time_s"] == second.train_time_s


def test_resuming_with_other_settings_is_refused_naming_them(tmp_path):
    path = tmp_path / "run.pt"
    config = {
        "preset": "sinusoid",
        "inner_lr": 0.01,
        "iterations": 2,
        "execution": "loop",
        "precision": "float32",
    }
    _run(1, iterations=2, checkpoint_path=path, config=config)
    # more iterations and another execution of the same arithmetic: allowed
    longer = {**config, "iterations": 3, "execution": "vmap"}
    assert _run(1, iterations=3, checkpoint_path=path, resume=True, config=longer).iteration == 3
    changed = {**longer, "inner_lr": 0.02, "precision": "bf16", "new_key": 1}
    with pytest.raises(
        ValueError, match=r"inner_lr: 0.01 -> 0.02, precision: 'float32' -> 'bf16'\)"
    ):
        _run(1, iterations=4, checkpoint_path=path, resume=True, config=changed)
