"""The learned optimizer of Andrychowicz et al. (2016): preprocessing, the coordinate-wise LSTM,
truncated unrolls, the baselines, and a real (short) meta-training run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from _maml_helpers import finite_difference_grad, one_thread

from metalearn_edu.config import OMNIGLOT_ENV
from metalearn_edu.data.omniglot import ARCHIVES
from metalearn_edu.learned_optimizers import (
    P_PAPER,
    P_RELEASED_CODE,
    LSTMOptimizer,
    classification_objective,
    detach_state,
    final_loss_median,
    first_update,
    flatten_params,
    log_grid,
    log_sign,
    lstm_cell,
    meta_train_on_quadratics,
    omniglot_classification,
    quadratic_objective,
    run_adam,
    run_learned_optimizer,
    run_sgd,
    truncated_meta_step,
    tune_learning_rate,
    unflatten_params,
    unroll,
)
from metalearn_edu.models import MLP
from metalearn_edu.tasks.quadratic import QuadraticTasks, quadratic_gradient

f64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _optimizer_params(optimizer: LSTMOptimizer, seed: int = 0) -> dict[str, torch.Tensor]:
    return {n: p.to(f64) for n, p in optimizer.init(torch.Generator().manual_seed(seed)).items()}


def _quadratics(batch: int = 4, seed: int = 0, dim: int = 10):
    g = torch.Generator().manual_seed(seed)
    tasks = QuadraticTasks(dim=dim)
    W, y = tasks.sample_problems(batch, g)
    return quadratic_objective(W.to(f64), y.to(f64)), tasks.initial_point(batch, g).to(f64), W, y


# --- preprocessing ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [P_PAPER, P_RELEASED_CODE])
def test_log_sign_matches_the_formula_on_both_branches(p):
    x = torch.tensor([3.0, -0.2, 1e-2, -1e-3, 1e-5, -1e-7, 2e-9, 0.0, -4e-12], dtype=f64)
    out = log_sign(x, p)
    assert out.shape == (9, 2)
    for value, (first, second) in zip(x.tolist(), out.tolist(), strict=True):
        if abs(value) >= math.exp(-p):
            expected = (math.log(abs(value)) / p, math.copysign(1.0, value))
        else:
            expected = (-1.0, math.exp(p) * value)
        assert first == pytest.approx(expected[0], abs=1e-14)
        assert second == pytest.approx(expected[1], abs=1e-14)
    # both branches occur for each p, and the map is continuous at |x| = e^-p
    assert (x.abs() >= math.exp(-p)).any() and (x.abs() < math.exp(-p)).any()
    edge = torch.tensor([math.exp(-p), -math.exp(-p)], dtype=f64)
    below = edge * (1 - 1e-12)
    assert torch.allclose(log_sign(edge, p), log_sign(below, p), atol=1e-10)


def test_released_code_clamp_form_agrees_with_the_formula():
    """DeepMind's LogAndSign(k=5): clamp(log(|g| + eps) / k, min=-1), clamp(g e^k, -1, 1)."""
    k = P_RELEASED_CODE
    g = torch.logspace(-12, 2, 57, dtype=f64) * torch.tensor([1.0, -1.0], dtype=f64).repeat(29)[:57]
    clamp_form = torch.stack(
        [
            torch.clamp(torch.log(g.abs() + 1e-30) / k, min=-1.0),
            torch.clamp(g * math.exp(k), -1.0, 1.0),
        ],
        dim=-1,
    )
    assert torch.allclose(log_sign(g, k), clamp_form, atol=1e-12)


def test_log_sign_gradient_is_finite_at_zero_and_bad_p_raises():
    x = torch.tensor([0.0, 1.0], dtype=f64, requires_grad=True)
    log_sign(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    for bad in (0, -1.0, math.inf):
        with pytest.raises(ValueError, match="p must be a positive number"):
            log_sign(x, bad)


# --- the LSTM ---------------------------------------------------------------------------------


def test_lstm_cell_equals_torch_lstm_cell():
    torch.manual_seed(0)
    reference = torch.nn.LSTMCell(3, 5).double()
    params = {
        "weight_ih": reference.weight_ih.detach(),
        "weight_hh": reference.weight_hh.detach(),
        "bias": (reference.bias_ih + reference.bias_hh).detach(),
    }
    x, h, c = (torch.randn(7, n, dtype=f64) for n in (3, 5, 5))
    ours = lstm_cell(params, x, (h, c))
    theirs = reference(x, (h, c))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("p", [P_PAPER, None])
def test_coordinatewise_lstm_equals_a_loop_over_coordinates(p):
    optimizer = LSTMOptimizer(hidden=6, p=p)
    params = _optimizer_params(optimizer)
    grads = [torch.randn(3, 4, dtype=f64) * 10.0 ** torch.randint(-6, 2, (3, 4)) for _ in range(3)]
    state = optimizer.initial_state(12, grads[0])
    loops = [optimizer.initial_state(1, grads[0]) for _ in range(12)]
    for grad in grads:
        update, state = optimizer.step(params, grad, state)
        assert update.shape == grad.shape
        for j in range(12):
            one, loops[j] = optimizer.step(params, grad.reshape(-1)[j : j + 1], loops[j])
            assert torch.allclose(update.reshape(-1)[j], one[0], atol=1e-13)
            for (h, c), (h1, c1) in zip(state, loops[j], strict=True):
                assert torch.allclose(h[j], h1[0], atol=1e-13)
                assert torch.allclose(c[j], c1[0], atol=1e-13)


def test_optimizer_settings_and_state_are_checked():
    with pytest.raises(ValueError, match="hidden and layers must be positive"):
        LSTMOptimizer(hidden=0)
    with pytest.raises(ValueError, match="p must be a positive number or None"):
        LSTMOptimizer(p=-1.0)
    with pytest.raises(ValueError, match="output_scale must be positive"):
        LSTMOptimizer(output_scale=0.0)
    optimizer = LSTMOptimizer()
    params = optimizer.init()
    with pytest.raises(ValueError, match="the gradient has 5 entries"):
        optimizer.step(params, torch.zeros(5), optimizer.initial_state(4, torch.zeros(1)))


# --- truncated BPTT --------------------------------------------------------------------------


def test_no_gradient_flows_across_a_truncation_boundary():
    optimizer = LSTMOptimizer(hidden=5)
    params = {n: p.requires_grad_() for n, p in _optimizer_params(optimizer).items()}
    loss_fn, theta0, _, _ = _quadratics(batch=3, dim=4)
    state = optimizer.initial_state(theta0.numel(), theta0)
    _, theta, state = unroll(optimizer, params, loss_fn, theta0, state, 3)
    assert theta.grad_fn is not None  # inside a truncation, θ depends on φ

    cut_theta, cut_state = detach_state(theta, state)
    assert cut_theta.grad_fn is None and all(
        h.grad_fn is None and c.grad_fn is None for h, c in cut_state
    )
    losses, _, _ = unroll(optimizer, params, loss_fn, cut_theta, cut_state, 3)
    truncated = torch.autograd.grad(losses.sum(), list(params.values()))

    # the same second truncation from copies that never had a graph: identical meta-gradient
    fresh_theta = cut_theta.clone()
    fresh_state = [(h.clone(), c.clone()) for h, c in cut_state]
    losses_fresh, _, _ = unroll(optimizer, params, loss_fn, fresh_theta, fresh_state, 3)
    fresh = torch.autograd.grad(losses_fresh.sum(), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(truncated, fresh, strict=True))

    # without the cut, the gradient would also reach back into the first truncation
    losses_through, _, _ = unroll(optimizer, params, loss_fn, theta, state, 3)
    through = torch.autograd.grad(losses_through.sum(), list(params.values()))
    assert any(not torch.allclose(a, b) for a, b in zip(truncated, through, strict=True))


def test_truncated_meta_step_updates_once_per_truncation():
    optimizer = LSTMOptimizer(hidden=4)
    params = {n: p.requires_grad_() for n, p in _optimizer_params(optimizer).items()}
    loss_fn, theta0, _, _ = _quadratics(batch=2, dim=3)
    steps = []

    class CountingSGD(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    meta_opt = CountingSGD(params.values(), lr=1e-3)
    meta_losses = truncated_meta_step(
        optimizer, params, meta_opt, loss_fn, theta0, optimizee_steps=12, unroll_length=4
    )
    assert len(meta_losses) == 3 and len(steps) == 3
    with pytest.raises(ValueError, match="must be a multiple of unroll_length"):
        truncated_meta_step(
            optimizer, params, meta_opt, loss_fn, theta0, optimizee_steps=10, unroll_length=4
        )


def test_meta_training_beats_the_initial_optimizer_on_held_out_quadratics():
    optimizer = LSTMOptimizer()
    initial = optimizer.init(torch.Generator().manual_seed(0))
    trained, history = meta_train_on_quadratics(
        optimizer, 12, params=initial, meta_batch_size=32, seed=0
    )
    assert len(history) == 12
    _, theta0, W, y = _quadratics(batch=64, seed=123)  # held out: not the training seed
    loss_fn32, theta0 = quadratic_objective(W, y), theta0.float()
    before = final_loss_median(run_learned_optimizer(optimizer, initial, loss_fn32, theta0, 100))
    after = final_loss_median(run_learned_optimizer(optimizer, trained, loss_fn32, theta0, 100))
    start = final_loss_median(run_learned_optimizer(optimizer, trained, loss_fn32, theta0, 0))
    assert after < 0.5 * before, (before, after)
    assert after < 0.5 * start, (start, after)


# --- baselines ---------------------------------------------------------------------------------


def test_sgd_is_gradient_descent_and_adam_is_torch_adam():
    loss_fn, theta0, W, y = _quadratics(batch=3, dim=5)
    W, y = W.to(f64), y.to(f64)
    losses = run_sgd(loss_fn, theta0, 0.01, 4)
    theta = theta0.clone()
    for _ in range(4):
        theta = theta - 0.01 * quadratic_gradient(theta, W, y)
    assert torch.allclose(losses[-1], loss_fn(theta), atol=1e-12)

    ours = run_adam(loss_fn, theta0, 0.05, 6)
    theta = theta0.clone().requires_grad_()
    adam = torch.optim.Adam([theta], lr=0.05)
    for _ in range(6):
        adam.zero_grad()
        loss_fn(theta).sum().backward()
        adam.step()
    assert torch.allclose(ours[-1], loss_fn(theta.detach()), atol=1e-10)
    assert ours.shape == (7, 3)


def test_learning_rate_grid_search_prefers_the_best_and_rejects_divergence():
    loss_fn, theta0, _, _ = _quadratics(batch=8)
    grid = log_grid(1e-4, 1.0, per_decade=2)
    assert grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(1.0) and len(grid) == 9
    best, scores = tune_learning_rate(run_sgd, loss_fn, theta0, grid, 30)
    assert scores[best] == min(scores.values())
    assert scores[1.0] > 1e6 * scores[best]  # SGD at lr 1 diverges on these quadratics
    assert final_loss_median(torch.tensor([[1.0, 2.0], [0.5, math.nan]])) == math.inf
    with pytest.raises(ValueError, match="at least one learning rate"):
        tune_learning_rate(run_sgd, loss_fn, theta0, [], 3)
    with pytest.raises(ValueError, match="learning rate must be a positive"):
        run_adam(loss_fn, theta0, -1.0, 3)


# --- a small network as the optimizee ------------------------------------------------------------


def test_flatten_round_trip_and_a_network_objective():
    model = MLP((6, 5, 3), "sigmoid", "xavier")
    params = model.init(torch.Generator().manual_seed(0))
    theta, shapes = flatten_params(params)
    assert theta.shape == (6 * 5 + 5 + 5 * 3 + 3,)
    rebuilt = unflatten_params(theta, shapes)
    assert all(torch.equal(rebuilt[n], params[n]) for n in params)
    with pytest.raises(ValueError, match="theta must be a vector of 53 entries"):
        unflatten_params(theta[:-1], shapes)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    loss_fn = classification_objective(model, x, y, shapes, batch_size=16, generator=g)
    thetas = torch.stack([theta, theta + 0.1])
    assert loss_fn(thetas).shape == (2,)
    optimizer = LSTMOptimizer()
    losses = run_learned_optimizer(optimizer, optimizer.init(), loss_fn, thetas, 3)
    assert losses.shape == (4, 2) and torch.isfinite(losses).all()
    with pytest.raises(ValueError, match="same positive number of examples"):
        classification_objective(model, x, y[:-1], shapes)


def test_first_update_is_one_step_from_the_zero_state():
    optimizer = LSTMOptimizer(hidden=5)
    params = _optimizer_params(optimizer)
    grads = torch.linspace(-3, 3, 7, dtype=f64)
    curve = first_update(optimizer, params, grads)
    for g, u in zip(grads, curve, strict=True):
        one, _ = optimizer.step(params, g.reshape(1), optimizer.initial_state(1, grads))
        assert torch.allclose(one[0], u, atol=1e-14)


def test_meta_gradient_matches_finite_differences_on_a_linear_optimizee():
    """On f(θ) = a·θ the gradient a does not depend on θ, so treating it as a constant (as the
    meta-gradient does) is exact, and central differences of the meta-loss must agree."""
    optimizer = LSTMOptimizer(hidden=3)
    params = _optimizer_params(optimizer, seed=4)
    g = torch.Generator().manual_seed(5)
    a = torch.randn(2, 3, generator=g, dtype=f64) * torch.tensor([1.0, 1e-3, 1e2], dtype=f64)
    theta0 = torch.randn(2, 3, generator=g, dtype=f64)

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        return (a * theta).sum(-1)

    def meta_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        state = optimizer.initial_state(theta0.numel(), theta0)
        losses, _, _ = unroll(optimizer, p, loss_fn, theta0, state, 4)
        return losses.sum(0).mean()

    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    analytic = torch.autograd.grad(meta_loss(leaves), list(leaves.values()))
    numeric = finite_difference_grad(lambda p: meta_loss(p).detach(), params, h=1e-6)
    for name, grad in zip(leaves, analytic, strict=True):
        assert torch.allclose(grad, numeric[name], atol=1e-7, rtol=1e-5), (
            name,
            (grad - numeric[name]).abs().max(),
        )


OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
OMNIGLOT = Path(os.environ[OMNIGLOT_ENV]) if os.environ.get(OMNIGLOT_ENV) else OMNIGLOT


@pytest.mark.skipif(
    not all((OMNIGLOT / name).is_file() for name in ARCHIVES),
    reason=f"the Omniglot archives are not in {OMNIGLOT} (set {OMNIGLOT_ENV} to their folder)",
)
def test_omniglot_as_an_ordinary_classification_problem():
    # the default cache, which the notebooks build and use too
    train_x, train_y, test_x, test_y = omniglot_classification(ways=10, root=OMNIGLOT)
    assert train_x.shape == (150, 784) and test_x.shape == (50, 784)
    assert torch.equal(train_y.bincount(), torch.full((10,), 15))
    assert torch.equal(test_y.bincount(), torch.full((10,), 5))
    assert 0 <= train_x.min() and train_x.max() <= 1
