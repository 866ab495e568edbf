"""Reading a Meta-LSTM: pinned gates are SGD, the gate schedule averages the right tasks and
coordinates, and the gates' three-term form equals W · [h, θ, previous gate] + b."""

from __future__ import annotations

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.gate_schedule import gate_schedule
from metalearn_edu.inner_loop import adapt
from metalearn_edu.losses import task_loss
from metalearn_edu.meta_lstm import (
    MetaLSTM,
    gates,
    gates_by_parameter,
    initial_state,
    pin_gates,
)
from metalearn_edu.models import MLP
from metalearn_edu.tasks.sinusoid import SinusoidTasks

f64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _algorithm(steps: int = 3) -> tuple[MetaLSTM, dict[str, torch.Tensor]]:
    algorithm = MetaLSTM(MLP((1, 6, 1), "relu", "xavier"), inner_steps=steps, hidden=4)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    return algorithm, {n: p.to(f64) for n, p in params.items()}


@pytest.mark.parametrize("alpha", [0.01, 0.3])
def test_pinned_gates_turn_the_meta_lstm_into_sgd(alpha):
    algorithm, params = _algorithm()
    # a trained-looking meta-learner: gates that depend on h, θ and the previous gate
    params = {**params, "cell.W_F": torch.full_like(params["cell.W_F"], 0.5)}
    params["cell.W_I"] = torch.full_like(params["cell.W_I"], -0.3)
    pinned = pin_gates(params, alpha)
    assert pinned["cell.b_F"].dtype == f64 and torch.sigmoid(pinned["cell.b_F"]).item() == 1.0
    assert torch.sigmoid(pinned["cell.b_I"]).item() == pytest.approx(alpha, rel=1e-12)
    assert torch.equal(params["cell.W_F"], torch.full_like(params["cell.W_F"], 0.5))  # a copy
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, generator=g, dtype=f64)
    y = torch.sin(x)
    ours = algorithm.adapt(pinned, x, y)
    learner, _ = algorithm.split(params)
    leaves = {n: p.clone().requires_grad_() for n, p in learner.items()}
    sgd = adapt(
        lambda p: task_loss(algorithm.model.forward(p, x), y),
        leaves,
        inner_lr=alpha,
        inner_steps=3,
        first_order=True,
    )
    for name in learner:
        assert torch.allclose(ours[name], sgd[name], atol=1e-13, rtol=0), name
    # and the unpinned meta-learner is not SGD
    other = algorithm.adapt(params, x, y)
    assert not all(torch.allclose(other[n], sgd[n], atol=1e-6) for n in learner)


def test_pinned_gates_in_float32_keep_theta_exactly():
    _, params = _algorithm()
    pinned = pin_gates({n: p.float() for n, p in params.items()}, 0.1)
    assert torch.sigmoid(pinned["cell.b_F"]).item() == 1.0


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_pin_gates_refuses_a_rate_a_sigmoid_cannot_reach(alpha):
    _, params = _algorithm()
    with pytest.raises(ValueError, match="alpha must lie in"):
        pin_gates(params, alpha)


def test_gate_schedule_averages_gates_by_parameter_over_evaluates_tasks():
    algorithm, params = _algorithm(steps=2)
    tasks = SinusoidTasks(support_size=5, query_size=5)
    schedule, losses = gate_schedule(algorithm, params, tasks, 3, seed=7, batch_size=2)
    assert losses.shape == (3, 2)
    learner, _ = algorithm.split(params)
    expected = {n: {"forget": 0.0, "input": 0.0} for n in learner}
    expected_losses = []
    for sx, sy, _, _ in meta_test_tasks(algorithm.model, tasks, 3, batch_size=2, seed=7):
        _, trace = algorithm.adapt_with_trace(params, sx.to(f64), sy.to(f64))
        expected_losses.append(torch.stack(trace.losses))
        for name, by_gate in gates_by_parameter(trace, learner).items():
            for gate, values in by_gate.items():
                expected[name][gate] = expected[name][gate] + values / 3
    assert list(schedule) == list(learner)
    for name in learner:
        for gate in ("forget", "input"):
            assert torch.allclose(schedule[name][gate], expected[name][gate], atol=1e-14)
    assert torch.allclose(losses, torch.stack(expected_losses), atol=1e-14)
    assert not losses.requires_grad


def test_gates_are_a_sigmoid_of_w_times_h_theta_and_the_previous_gate():
    _, params = _algorithm()
    g = torch.Generator().manual_seed(4)
    n, hidden = 7, 4
    theta = torch.randn(n, generator=g, dtype=f64)
    state = initial_state(theta, hidden)._replace(
        f=torch.rand(n, generator=g, dtype=f64), i=torch.rand(n, generator=g, dtype=f64)
    )
    h = torch.randn(n, hidden, generator=g, dtype=f64)
    f, i = gates(params, h, state)
    for gate, previous, name in ((f, state.f, "F"), (i, state.i, "I")):
        features = torch.cat([h, theta[:, None], previous[:, None]], dim=1)
        expected = torch.sigmoid(features @ params[f"cell.W_{name}"] + params[f"cell.b_{name}"])
        assert torch.allclose(gate, expected, atol=1e-15, rtol=0)
