"""Does an optimizer learned on quadratics transfer? Notebook 07's comparison on a small network
(Andrychowicz et al. 2016, §3.2: an MLP with one hidden layer of 20 sigmoid units, then
the generalisation tests: a longer horizon, more or wider hidden layers, ReLU instead of sigmoid).

Protocol, as on the quadratics (:mod:`~.comparison`): SGD and Adam get the learning rate that gives
the lowest median final training loss on a grid (tuned on their own minibatch sequence), then every
optimizer trains the same ``num_networks`` freshly initialised networks from the same θ_0 on the
same minibatch sequence; the score is the median over networks of the final training loss, and the
accuracy of the final networks on held-out examples is reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.baselines import (
    log_grid,
    run_adam,
    run_sgd,
    tune_learning_rate,
)
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer
from metalearn_edu.learned_optimizers.optimizee import (
    accuracy_of,
    classification_objective,
    flatten_params,
)
from metalearn_edu.learned_optimizers.unroll import (
    LossFn,
    quadratic_objective,
    run_learned_optimizer,
)
from metalearn_edu.models.mlp import MLP
from metalearn_edu.tasks.quadratic import QuadraticTasks


class ScaledQuadraticTasks(QuadraticTasks):
    """Quadratics f(θ) = ‖sWθ − y‖² with W, y ~ N(0, 1) as in :class:`QuadraticTasks` and a fixed
    factor ``scale`` = s on W: the curvature is s² times that of the problems the optimizer was
    trained on, and the minimum W⁻¹y/s is 1/s times as far. Tuned SGD and Adam follow by changing
    their learning rate; a learned optimizer has its step sizes built into φ."""

    def __init__(self, scale: float, dim: int = 10, init_std: float = 0.01) -> None:
        super().__init__(dim, init_std)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        self.scale = float(scale)

    def sample_problems(
        self, meta_batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        W, y = super().sample_problems(meta_batch_size, generator)
        return self.scale * W, y


def held_out_losses(
    optimizer: LSTMOptimizer,
    params: Params,
    learning_rates: Mapping[str, float],
    *,
    steps: int = 100,
    num_problems: int = 256,
    tasks: QuadraticTasks | None = None,
    seed: int = 1000,
) -> dict[str, Tensor]:
    """The loss curves ``[steps + 1, num_problems]`` behind
    :func:`~.comparison.compare_on_quadratics`'s table: SGD and Adam at ``learning_rates["SGD"]``
    and ``["Adam"]`` (the tuned ones) and the learned optimizer, on the same held-out quadratics
    (seed ``seed + 1``). Returns ``{"SGD": ..., "Adam": ..., "LSTM": ...}``."""
    tasks = tasks or QuadraticTasks()
    dtype = next(iter(params.values())).dtype
    g = torch.Generator().manual_seed(seed + 1)
    W, y = tasks.sample_problems(num_problems, g)
    theta0 = tasks.initial_point(num_problems, g).to(dtype)
    loss_fn = quadratic_objective(W.to(dtype), y.to(dtype))
    return {
        "SGD": run_sgd(loss_fn, theta0, learning_rates["SGD"], steps),
        "Adam": run_adam(loss_fn, theta0, learning_rates["Adam"], steps),
        "LSTM": run_learned_optimizer(optimizer, params, loss_fn, theta0, steps),
    }


@dataclass
class NetworkRun:
    """One optimizer on ``B`` networks: training losses ``[steps + 1, B]``, held-out accuracy of
    the final networks ``[B]``, and the learning rate (``None`` for the learned optimizer)."""

    losses: Tensor
    test_accuracy: Tensor
    lr: float | None = None

    @property
    def median_final_loss(self) -> float:
        final = self.losses[-1]
        return float("inf") if not torch.isfinite(final).all() else final.median().item()


def compare_on_network(
    optimizer: LSTMOptimizer,
    params: Params,
    model: MLP,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    steps: int = 100,
    num_networks: int = 8,
    batch_size: int = 128,
    learning_rates: Sequence[float] | None = None,
    tune_steps: int | None = None,
    seed: int = 0,
) -> dict[str, NetworkRun]:
    """SGD and Adam (tuned over ``learning_rates`` for ``tune_steps`` steps, default ``steps``) and
    the learned optimizer, each training ``num_networks`` copies of ``model`` (initialised with
    seed ``seed``) for ``steps`` steps on ``data = (train_x, train_y, test_x, test_y)``.

    Returns ``{"SGD": NetworkRun, "Adam": NetworkRun, "LSTM": NetworkRun}``.
    """
    if steps < 1 or num_networks < 1:
        raise ValueError(f"steps and num_networks must be positive, got {steps}, {num_networks}.")
    train_x, train_y, test_x, test_y = data
    dtype = next(iter(params.values())).dtype
    train_x, test_x = train_x.to(dtype), test_x.to(dtype)
    init = torch.Generator().manual_seed(seed)
    thetas, shapes = [], []
    for _ in range(num_networks):
        theta, shapes = flatten_params(model.init(init))
        thetas.append(theta)
    theta0 = torch.stack(thetas).to(dtype)
    grid = list(learning_rates or log_grid(1e-3, 10.0, per_decade=2))

    def objective(minibatch_seed: int) -> LossFn:
        g = torch.Generator().manual_seed(minibatch_seed)
        return classification_objective(model, train_x, train_y, shapes, batch_size, g)

    def score(run, lr: float | None) -> NetworkRun:
        last: list[Tensor] = []
        loss_fn = objective(seed + 2)

        def keep_last(theta: Tensor) -> Tensor:
            last[:] = [theta.detach()]
            return loss_fn(theta)

        losses = run(keep_last, theta0)
        accuracy = accuracy_of(model, last[0], shapes, test_x, test_y)
        return NetworkRun(losses, accuracy, lr)

    results: dict[str, NetworkRun] = {}
    for name, run in (("SGD", run_sgd), ("Adam", run_adam)):
        lr, _ = tune_learning_rate(run, objective(seed + 1), theta0, grid, tune_steps or steps)
        results[name] = score(lambda f, t, run=run, lr=lr: run(f, t, lr, steps), lr)
    results["LSTM"] = score(
        lambda f, t: run_learned_optimizer(optimizer, params, f, t, steps), None
    )
    return results
