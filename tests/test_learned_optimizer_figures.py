"""Notebook 07's library pieces: parameter paths recorded from the runners, the comparison on a
small network, and the figures (each returns a Figure with what it promises; the 2-D widget works at
the extremes of its sliders)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
from _maml_helpers import one_thread
from matplotlib.figure import Figure

from metalearn_edu.learned_optimizers import (
    LSTMOptimizer,
    first_update,
    log_sign,
    quadratic_objective,
    run_adam,
    run_learned_optimizer,
    run_sgd,
)
from metalearn_edu.learned_optimizers.comparison import compare_on_quadratics
from metalearn_edu.learned_optimizers.generalization import (
    NetworkRun,
    ScaledQuadraticTasks,
    compare_on_network,
    held_out_losses,
)
from metalearn_edu.learned_optimizers.paths import quadratic_paths, record_path
from metalearn_edu.models import MLP
from metalearn_edu.plots.learned_optimizers import (
    draw_2d_problem,
    draw_gradient_magnitudes,
    draw_loss_curves,
    draw_preprocessing,
    draw_quadratic_paths,
    draw_update_functions,
)
from metalearn_edu.tasks.quadratic import QuadraticTasks, quadratic_gradient, quadratic_loss
from metalearn_edu.widgets import Slider, check_extremes

f64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def rendered(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    assert plt.get_fignums() == []
    return fig


def _optimizer64(seed: int = 0) -> tuple[LSTMOptimizer, dict[str, torch.Tensor]]:
    optimizer = LSTMOptimizer()
    params = optimizer.init(torch.Generator().manual_seed(seed))
    return optimizer, {n: p.to(f64) for n, p in params.items()}


def _problems(batch: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tasks = QuadraticTasks(dim=dim)
    W, y = tasks.sample_problems(batch, g)
    W, y = W.to(f64), y.to(f64)
    return W, y, tasks.initial_point(batch, g).to(f64)


# --- paths -------------------------------------------------------------------------------------


def test_record_path_gives_the_points_gradient_descent_visits():
    W, y, theta0 = _problems(batch=3, dim=4)
    loss_fn = quadratic_objective(W, y)
    points, losses = record_path(lambda f, t: run_sgd(f, t, 0.01, 5), loss_fn, theta0)
    assert points.shape == (6, 3, 4) and losses.shape == (6, 3)
    theta = theta0.clone()
    for t in range(6):  # θ_t by hand, independently of run_sgd
        assert torch.allclose(points[t], theta, atol=1e-13)
        assert torch.allclose(losses[t], quadratic_loss(theta, W, y), atol=1e-12)
        theta = theta - 0.01 * quadratic_gradient(theta, W, y)


def test_record_path_of_adam_and_of_the_learned_optimizer_ends_where_their_losses_say():
    W, y, theta0 = _problems(batch=2, dim=3)
    loss_fn = quadratic_objective(W, y)
    optimizer, params = _optimizer64()
    for run in (
        lambda f, t: run_adam(f, t, 0.1, 7),
        lambda f, t: run_learned_optimizer(optimizer, params, f, t, 7),
    ):
        points, losses = record_path(run, loss_fn, theta0)
        assert points.shape == (8, 2, 3)
        assert torch.equal(points[0], theta0)
        assert torch.allclose(quadratic_loss(points, W, y), losses, atol=1e-12)
        assert torch.allclose(losses, run(loss_fn, theta0), atol=1e-12)


def test_record_path_refuses_a_runner_that_evaluates_twice_per_point():
    W, y, theta0 = _problems(batch=1, dim=2)

    def twice(f, t):
        f(t)
        return run_sgd(f, t, 0.01, 2)

    with pytest.raises(RuntimeError, match="one evaluation per point"):
        record_path(twice, quadratic_objective(W, y), theta0)


def test_quadratic_paths_start_together_and_follow_each_optimizer():
    optimizer, params = _optimizer64()
    lrs = {"SGD": 0.05, "Adam": 0.1}
    W, y, paths = quadratic_paths(optimizer, params, lrs, seed=3, steps=12)
    assert W.shape == (2, 2) and y.shape == (2,)
    assert set(paths) == {"SGD", "Adam", "LSTM"}
    assert all(p.shape == (13, 2) for p in paths.values())
    assert torch.equal(paths["SGD"][0], paths["Adam"][0])
    assert torch.equal(paths["SGD"][0], paths["LSTM"][0])
    W64, y64 = W.to(f64), y.to(f64)
    step = paths["SGD"][0] - 0.05 * quadratic_gradient(paths["SGD"][0], W64, y64)
    assert torch.allclose(paths["SGD"][1], step, atol=1e-12)
    # Adam's first step moves every coordinate by lr (m̂/√v̂ = sgn ∇, up to ε)
    assert torch.allclose(
        (paths["Adam"][1] - paths["Adam"][0]).abs(), torch.full((2,), 0.1, dtype=f64)
    )
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        quadratic_paths(optimizer, params, lrs, seed=0, steps=0)


# --- held-out quadratics ------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [QuadraticTasks(dim=4), ScaledQuadraticTasks(3.0, dim=4)])
def test_held_out_losses_are_the_curves_behind_the_comparison_table(tasks):
    optimizer, params = _optimizer64()
    table = compare_on_quadratics(
        optimizer,
        params,
        steps=20,
        num_problems=16,
        tasks=tasks,
        seed=7,
        learning_rates=[1e-3, 1e-2, 0.1],
    )
    lrs = {"SGD": table["sgd"]["lr"], "Adam": table["adam"]["lr"]}
    curves = held_out_losses(optimizer, params, lrs, steps=20, num_problems=16, tasks=tasks, seed=7)
    assert all(c.shape == (21, 16) and c.dtype == f64 for c in curves.values())
    for name, key in (("SGD", "sgd"), ("Adam", "adam"), ("LSTM", "lstm")):
        assert curves[name][-1].median().item() == table[key]["median_final_loss"]
    assert curves["LSTM"][0].median().item() == table["initial"]["median_initial_loss"]


def test_scaled_quadratics_scale_w_and_keep_y():
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    W, y = QuadraticTasks(dim=3).sample_problems(2, g1)
    W10, y10 = ScaledQuadraticTasks(10.0, dim=3).sample_problems(2, g2)
    assert torch.allclose(W10, 10 * W) and torch.equal(y10, y)
    with pytest.raises(ValueError, match="scale must be positive"):
        ScaledQuadraticTasks(0.0)


# --- a small network ------------------------------------------------------------------------------


def _toy_data(seed: int = 0):
    """Two Gaussian blobs in 6-d (an easy problem every optimizer can make progress on)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(80) % 2
    x = torch.randn(80, 6, generator=g) + 1.5 * (2 * y[:, None] - 1)
    return x[:60], y[:60], x[60:], y[60:]


def test_compare_on_network_tunes_the_baselines_and_scores_everyone_on_the_same_networks():
    optimizer, params = _optimizer64()
    model = MLP((6, 5, 2), "sigmoid", "xavier")
    grid = [1e-3, 0.1, 1.0]
    results = compare_on_network(
        optimizer,
        params,
        model,
        _toy_data(),
        steps=15,
        num_networks=3,
        batch_size=20,
        learning_rates=grid,
    )
    assert list(results) == ["SGD", "Adam", "LSTM"]
    for name, run in results.items():
        assert isinstance(run, NetworkRun)
        assert run.losses.shape == (16, 3) and run.losses.dtype == f64
        assert run.test_accuracy.shape == (3,)
        assert ((0 <= run.test_accuracy) & (run.test_accuracy <= 1)).all()
        assert (run.lr in grid) if name != "LSTM" else run.lr is None
    # the same initial networks and the same first minibatch for every optimizer
    assert torch.equal(results["SGD"].losses[0], results["Adam"].losses[0])
    assert torch.equal(results["SGD"].losses[0], results["LSTM"].losses[0])
    # on two well-separated blobs, tuned Adam learns: training loss down, test accuracy high
    assert results["Adam"].median_final_loss < 0.5 * results["Adam"].losses[0].median().item()
    assert results["Adam"].test_accuracy.median() >= 0.9
    # the tuned learning rate is the best of the grid on the tuning sequence, which never
    # favours a rate that diverges
    assert math.isfinite(results["SGD"].median_final_loss)


def test_network_run_reports_divergence_as_infinite_loss():
    run = NetworkRun(torch.tensor([[1.0, 1.0], [0.5, math.nan]]), torch.zeros(2))
    assert run.median_final_loss == math.inf
    assert (
        NetworkRun(torch.tensor([[1.0, 3.0], [0.5, 0.25]]), torch.zeros(2)).median_final_loss
        == 0.25
    )
    with pytest.raises(ValueError, match="must be positive"):
        compare_on_network(*_optimizer64(), MLP((6, 2)), _toy_data(), steps=0)


# --- figures ------------------------------------------------------------------------------------


def test_preprocessing_figure_draws_both_features_for_each_p():
    x = torch.cat([-torch.logspace(2, -8, 50), torch.logspace(-8, 2, 50)]).to(f64)
    fig = rendered(draw_preprocessing(x, {"p = 10": log_sign(x, 10.0), "p = 5": log_sign(x, 5.0)}))
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)
    assert fig.axes[0].get_xscale() == "symlog"
    with pytest.raises(ValueError, match="not \\(100, 2\\)"):
        draw_preprocessing(x, {"bad": log_sign(x[:10])})
    with pytest.raises(ValueError, match="at least one setting"):
        draw_preprocessing(x, {})


def test_gradient_magnitude_histogram_skips_zeros():
    grads = {"layer0": torch.tensor([1e-6, 1e-3, 0.0, -2.0]), "layer1": torch.tensor([0.5, -1e-2])}
    (ax,) = rendered(draw_gradient_magnitudes(grads)).axes
    counts = [sum(p.get_height() for p in container) for container in ax.containers]
    assert counts == [3, 2]  # the zero entry has no logarithm and is left out
    with pytest.raises(ValueError, match="nonzero"):
        draw_gradient_magnitudes({"zeros": torch.zeros(3)})


def test_loss_curves_one_panel_per_setting_median_and_band():
    curves = {"SGD": torch.rand(11, 5) + 1, "LSTM": torch.rand(11, 5)}
    fig = rendered(
        draw_loss_curves({"a": curves, "b": curves, "c": curves, "d": curves}, columns=3)
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(visible) == 4
    ax = visible[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2 and ax.get_yscale() == "log"
    # five problems: the median is the middle value, and the band runs between the quartiles
    sgd = curves["SGD"].double()
    assert torch.allclose(torch.as_tensor(ax.lines[0].get_ydata()), sgd.median(1).values)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == pytest.approx(torch.quantile(sgd, 0.25, dim=1).min().item())
    assert max(band) == pytest.approx(torch.quantile(sgd, 0.75, dim=1).max().item())
    with pytest.raises(ValueError, match="at least one panel"):
        draw_loss_curves({"empty": {}})


def test_update_functions_draw_one_line_per_optimizer_sorted_by_gradient():
    optimizer, params = _optimizer64()
    grads = torch.tensor([0.5, -1e-4, 3.0, -2.0, 1e-6], dtype=f64)
    updates = {
        "SGD": -0.1 * grads,
        "Adam": -0.1 * torch.sign(grads),
        "LSTM": first_update(optimizer, params, grads),
    }
    fig = rendered(draw_update_functions(grads, updates))
    shape_ax, size_ax = fig.axes
    assert len(shape_ax.lines) == 3 + 1  # + the zero line
    xs = shape_ax.lines[0].get_xdata()
    assert list(xs) == sorted(xs)
    assert shape_ax.get_xscale() == "symlog"
    assert size_ax.get_xscale() == "log" and size_ax.get_yscale() == "log"
    # the step lengths of the positive gradients: SGD's is 0.1 ∇
    sgd = size_ax.lines[0]
    assert list(sgd.get_xdata()) == [0.5, 3.0, 1e-6]
    assert torch.allclose(torch.as_tensor(sgd.get_ydata()), 0.1 * torch.as_tensor(sgd.get_xdata()))
    with pytest.raises(ValueError, match="not the gradients'"):
        draw_update_functions(grads, {"bad": grads[:2]})


def test_quadratic_paths_figure_and_the_widget_at_its_extremes():
    optimizer, params = _optimizer64()
    W, y, paths = quadratic_paths(optimizer, params, {"SGD": 0.05, "Adam": 0.1}, seed=1, steps=5)
    (ax,) = rendered(draw_quadratic_paths(W, y, paths)).axes
    assert len(ax.lines) == 3 + 2  # three paths, the start and the minimum
    with pytest.raises(ValueError, match="need a 2-D problem"):
        draw_quadratic_paths(torch.eye(3), torch.ones(3), paths)
    sliders = [Slider("seed", 0, 20, 1, 0), Slider("steps", 5, 100, 5, 50)]
    settings = check_extremes(
        draw_2d_problem,
        sliders,
        optimizer=optimizer,
        params=params,
        learning_rates={"SGD": 0.05, "Adam": 0.1},
    )
    assert len(settings) == 1 + 4
