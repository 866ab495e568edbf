"""The Meta-LSTM of Ravi & Larochelle (2017): SGD as a special case, the coordinate-wise layer,
constant learner gradients, finite differences, clipping, and the training/evaluation interface."""

from __future__ import annotations

import math

import pytest
import torch
from _maml_helpers import classification_episode, finite_difference_grad, one_thread

from metalearn_edu.evaluation import evaluate
from metalearn_edu.inner_loop import adapt
from metalearn_edu.learned_optimizers import flatten_params, unflatten_params
from metalearn_edu.losses import task_loss
from metalearn_edu.meta_lstm import (
    LEARNER_PREFIX,
    MetaLSTM,
    cell_update,
    gates_by_parameter,
    initial_state,
    meta_learner_step,
)
from metalearn_edu.models import MLP, Conv4
from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import SinusoidTasks
from metalearn_edu.training import meta_train

f64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _tiny(hidden: int = 3, steps: int = 3) -> tuple[MetaLSTM, dict[str, torch.Tensor], Episode]:
    """A 2-3-2 classifier as the learner, one 2-way task with 4 support and 4 query examples."""
    algorithm = MetaLSTM(MLP((2, 3, 2), "tanh", "xavier"), inner_steps=steps, hidden=hidden)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    params = {n: p.to(f64) for n, p in params.items()}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 2, generator=g, dtype=f64)
    y = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 1]])
    return algorithm, params, Episode(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])


def test_initialisation_starts_as_gradient_descent():
    algorithm = MetaLSTM(MLP((2, 3, 2)), hidden=20)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    assert 4 <= params["cell.b_F"].item() <= 5 and -5 <= params["cell.b_I"].item() <= -4
    for name in ("lstm.weight_ih", "lstm.weight_hh", "lstm.bias", "cell.W_F", "cell.W_I"):
        assert params[name].abs().max() <= 0.01
    assert params["lstm.weight_ih"].shape == (80, 4)  # 4 inputs, 20 hidden units
    learner, _ = algorithm.split(params)
    assert set(learner) == {"layer0.weight", "layer0.bias", "layer1.weight", "layer1.bias"}

    # the first step: f ≈ σ(b_F) close to 1, i ≈ σ(b_I) small: θ_1 ≈ θ_0 − i ∇
    theta0, _ = flatten_params(learner)
    grad, loss = torch.randn_like(theta0), torch.tensor(0.7)
    state = meta_learner_step(params, initial_state(theta0, 20), loss, grad)
    assert (state.f > 0.98).all() and (state.i < 0.02).all()
    assert torch.allclose(state.theta, state.f * theta0 - state.i * grad)


def test_pinned_gates_make_the_meta_lstm_sgd():
    """f = 1 and i = α: the cell update is θ − α∇, so K meta-learner steps are K SGD steps."""
    alpha = 0.3
    algorithm, params, episode = _tiny()
    params = {
        **params,
        "cell.W_F": torch.zeros_like(params["cell.W_F"]),
        "cell.W_I": torch.zeros_like(params["cell.W_I"]),
        "cell.b_F": torch.tensor([40.0], dtype=f64),  # σ(40) == 1.0 in float64
        "cell.b_I": torch.tensor([math.log(alpha / (1 - alpha))], dtype=f64),
    }
    sx, sy = episode.support_x[0], episode.support_y[0]
    ours = algorithm.adapt(params, sx, sy, inner_steps=3)
    learner, _ = algorithm.split(params)
    leaves = {n: p.clone().requires_grad_() for n, p in learner.items()}
    sgd = adapt(
        lambda p: task_loss(algorithm.model.forward(p, sx), sy),
        leaves,
        inner_lr=alpha,
        inner_steps=3,
        first_order=True,
    )
    for name in learner:
        assert torch.allclose(ours[name], sgd[name], atol=1e-12, rtol=0)
    theta, grad = torch.randn(5, dtype=f64), torch.randn(5, dtype=f64)
    assert torch.equal(
        cell_update(theta, grad, torch.ones(5, dtype=f64), alpha), theta - alpha * grad
    )


def test_the_meta_learner_is_coordinatewise():
    _, params, _ = _tiny(hidden=4)
    n = 6
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(n, generator=g, dtype=f64)
    state = initial_state(theta, 4)
    singles = [initial_state(theta[j : j + 1], 4) for j in range(n)]
    for _ in range(3):
        grad = torch.randn(n, generator=g, dtype=f64) * 10.0 ** torch.randint(-6, 1, (n,))
        loss = torch.rand((), generator=g, dtype=f64)
        state = meta_learner_step(params, state, loss, grad)
        for j in range(n):
            singles[j] = meta_learner_step(params, singles[j], loss, grad[j : j + 1])
            for batched, single in zip(state, singles[j], strict=True):
                assert torch.allclose(batched[j], single[0], atol=1e-14)


def test_learner_gradients_enter_as_constants():
    algorithm, params, episode = _tiny()
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    adapted, trace = algorithm.adapt_with_trace(leaves, episode.support_x[0], episode.support_y[0])
    assert len(trace.grads) == 3 and len(trace.forget) == 3
    assert all(
        not g.requires_grad and not l.requires_grad
        for g, l in zip(trace.grads, trace.losses, strict=True)
    )
    assert all(p.grad_fn is not None for p in adapted.values())  # but θ_T depends on the weights


def test_meta_gradient_matches_finite_differences_on_a_tiny_learner():
    """The derivative of the query loss through the cell states and gates, with the learner's
    losses and gradients held at their recorded values (the official code's constants)."""
    algorithm, params, episode = _tiny()
    algorithm.clip_norm = None
    sx, sy, qx, qy = (
        t[0] for t in (episode.support_x, episode.support_y, episode.query_x, episode.query_y)
    )
    _, trace = algorithm.adapt_with_trace(params, sx, sy)
    learner, _ = algorithm.split(params)
    _, shapes = flatten_params(learner)

    def replayed_meta_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        theta0, _ = flatten_params(algorithm.split(p)[0])
        state = initial_state(theta0, algorithm.hidden)
        for loss, grad in zip(trace.losses, trace.grads, strict=True):
            state = meta_learner_step(p, state, loss, grad)
        return task_loss(algorithm.model.forward(unflatten_params(state.theta, shapes), qx), qy)

    grads, metrics = algorithm.meta_gradient(params, episode)
    assert metrics["post_loss"] == pytest.approx(replayed_meta_loss(params).item(), abs=1e-12)
    numeric = finite_difference_grad(replayed_meta_loss, params, h=1e-6)
    for name in params:
        assert torch.allclose(grads[name], numeric[name], atol=1e-8, rtol=1e-5), name
    # every part of the meta-learner receives a gradient: gates, layer 1 and c_0
    for name in (
        "cell.b_F",
        "cell.b_I",
        "cell.W_F",
        "lstm.weight_ih",
        LEARNER_PREFIX + "layer0.weight",
    ):
        assert grads[name].abs().max() > 0, name


def test_meta_gradient_norm_is_clipped_to_a_quarter():
    algorithm, params, episode = _tiny()
    algorithm.clip_norm = None
    raw, _ = algorithm.meta_gradient(params, episode)
    algorithm.clip_norm = 0.25
    clipped, _ = algorithm.meta_gradient(params, episode)
    norm = math.sqrt(sum((g**2).sum().item() for g in raw.values()))
    clipped_norm = math.sqrt(sum((g**2).sum().item() for g in clipped.values()))
    assert clipped_norm == pytest.approx(min(norm, 0.25), rel=1e-5)
    scale = clipped_norm / norm
    assert all(torch.allclose(clipped[n], scale * raw[n]) for n in raw)


def test_meta_lstm_trains_and_evaluates_with_the_library_loops():
    algorithm = MetaLSTM(MLP((1, 8, 1), "relu", "xavier"), inner_steps=2, hidden=5)
    tasks = SinusoidTasks(support_size=5, query_size=5)
    state = meta_train(algorithm, tasks, 3, meta_batch_size=2, seed=0, progress=False)
    assert state.iteration == 3 and len(state.history["train"]["post_loss"]) == 3
    result = evaluate(algorithm, state.meta_params, tasks, num_tasks=4, batch_size=2)
    assert result["num_tasks"] == 4 and result["inner_steps"] == 2
    assert math.isfinite(result["loss"]) and result["loss_ci95"] >= 0


def test_a_conv_learner_with_batch_norm():
    """Batch statistics in meta-training; support-set statistics for the queries in evaluation."""
    model = Conv4(ways=3, image_size=16, hidden=4, downsample="maxpool", transductive=False)
    algorithm = MetaLSTM(model, inner_steps=2, hidden=4)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    episode = classification_episode(tasks=2, ways=3, shots=1, queries=2, image_size=16)
    episode = episode.to(dtype=torch.float32)
    grads, metrics = algorithm.meta_gradient(params, episode)
    assert set(grads) == set(params) and 0 <= metrics["post_accuracy"] <= 1
    assert any(n.startswith(LEARNER_PREFIX + "block0.norm") for n in grads)


def test_bad_settings_raise():
    model = MLP((2, 3, 2))
    with pytest.raises(ValueError, match="inner_steps and hidden must be positive"):
        MetaLSTM(model, inner_steps=0)
    with pytest.raises(ValueError, match="inner_steps must be a positive integer"):
        MetaLSTM(model, inner_steps=2.5)
    with pytest.raises(ValueError, match="clip_norm must be positive"):
        MetaLSTM(model, clip_norm=-1.0)
    algorithm, params, episode = _tiny()
    with pytest.raises(ValueError, match="inner_steps must be a positive integer"):
        algorithm.adapt(params, episode.support_x[0], episode.support_y[0], inner_steps=0)
    with pytest.raises(ValueError, match="the gradient has shape"):
        meta_learner_step(
            params, initial_state(torch.zeros(3), 3), torch.tensor(1.0), torch.zeros(4)
        )
    with pytest.raises(ValueError, match="no learner initialisation"):
        algorithm.split({"cell.b_F": torch.zeros(1)})


def test_gates_by_parameter_average_each_learner_tensor():
    algorithm, params, episode = _tiny(steps=2)
    _, trace = algorithm.adapt_with_trace(params, episode.support_x[0], episode.support_y[0])
    learner, _ = algorithm.split(params)
    summary = gates_by_parameter(trace, learner)
    assert list(summary) == list(learner)
    weight = summary["layer0.weight"]  # the first 6 coordinates
    assert weight["input"].shape == (2,)
    assert torch.allclose(weight["input"][1], trace.input[1][:6].mean())
    assert torch.allclose(summary["layer1.bias"]["forget"][0], trace.forget[0][-2:].mean())
    with pytest.raises(ValueError, match="gates have 17 coordinates but the learner has 18"):
        gates_by_parameter(trace, {"w": torch.zeros(17), "extra": torch.zeros(1)})
