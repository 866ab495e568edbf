"""Where an optimizer goes, not only how low the loss gets: the parameter path θ_0, θ_1, …, θ_T of
any runner of :mod:`~.baselines` or :mod:`~.unroll`, and the optimizers' 2-D trajectories that
notebook 07 draws over a quadratic's contours (Andrychowicz et al. 2016, eq. 1:
θ_{t+1} = θ_t + g_t).

Every runner evaluates the objective exactly once per point it visits (to get f(θ_t) and ∇_t), so
an objective that records its argument records the path, with no second copy of any update rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.baselines import run_adam, run_sgd
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer
from metalearn_edu.learned_optimizers.unroll import (
    LossFn,
    quadratic_objective,
    run_learned_optimizer,
)
from metalearn_edu.tasks.quadratic import QuadraticTasks

#: ``run(loss_fn, θ_0) -> losses [T + 1, B]``: an optimizer with its settings bound.
Runner = Callable[[LossFn, Tensor], Tensor]


def record_path(run: Runner, loss_fn: LossFn, theta0: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``run(loss_fn, θ_0)`` and return its points ``[T + 1, B, n]`` and losses ``[T + 1, B]``.

    Raises ``RuntimeError`` if the runner did not evaluate the objective once per point.
    """
    points: list[Tensor] = []

    def recording(theta: Tensor) -> Tensor:
        points.append(theta.detach().clone())
        return loss_fn(theta)

    losses = run(recording, theta0)
    if len(points) != losses.shape[0]:
        raise RuntimeError(
            f"the runner evaluated the objective {len(points)} times for {losses.shape[0]} "
            "losses; record_path needs exactly one evaluation per point."
        )
    return torch.stack(points), losses


def quadratic_paths(
    optimizer: LSTMOptimizer,
    params: Params,
    learning_rates: Mapping[str, float],
    *,
    seed: int,
    steps: int,
    dim: int = 2,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """One random ``dim``-d quadratic f(θ) = ‖Wθ − y‖² (seed ``seed``, W and y ~ N(0, 1)) and the
    path ``[steps + 1, dim]`` of SGD and Adam (at ``learning_rates["SGD"]``, ``["Adam"]``) and of
    the learned optimizer on it, all from the same θ_0. Returns ``(W, y, paths)``."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}.")
    dtype = next(iter(params.values())).dtype
    tasks = QuadraticTasks(dim=dim)
    g = torch.Generator().manual_seed(seed)
    W, y = tasks.sample_problems(1, g)
    theta0 = tasks.initial_point(1, g).to(dtype)
    loss_fn = quadratic_objective(W.to(dtype), y.to(dtype))
    runners: dict[str, Runner] = {
        "SGD": lambda f, t: run_sgd(f, t, learning_rates["SGD"], steps),
        "Adam": lambda f, t: run_adam(f, t, learning_rates["Adam"], steps),
        "LSTM": lambda f, t: run_learned_optimizer(optimizer, params, f, t, steps),
    }
    paths = {name: record_path(run, loss_fn, theta0)[0][:, 0] for name, run in runners.items()}
    return W[0], y[0], paths
