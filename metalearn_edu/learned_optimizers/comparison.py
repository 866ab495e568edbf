"""The comparison the learned-optimizer notebook shows: on held-out quadratics, the learned
optimizer against SGD and Adam whose learning rates were tuned by grid search on *other*
quadratics. The score is the median over problems of the final loss (medians, because a few
ill-conditioned problems dominate any mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metalearn_edu.learned_optimizers.baselines import (
    final_loss_median,
    log_grid,
    run_adam,
    run_sgd,
    tune_learning_rate,
)
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer
from metalearn_edu.learned_optimizers.unroll import quadratic_objective, run_learned_optimizer
from metalearn_edu.tasks.quadratic import QuadraticTasks


def compare_on_quadratics(
    optimizer: LSTMOptimizer,
    params: Params,
    *,
    steps: int = 100,
    num_problems: int = 256,
    tasks: QuadraticTasks | None = None,
    learning_rates: Sequence[float] | None = None,
    seed: int = 1000,
) -> dict[str, dict[str, float]]:
    """Tune SGD and Adam on ``num_problems`` quadratics (seed ``seed``), then score them and the
    learned optimizer on ``num_problems`` different ones (seed ``seed + 1``).

    Returns ``{"sgd": {...}, "adam": {...}, "lstm": {...}}`` with each ``median_final_loss`` on the
    held-out problems (and the baselines' tuned ``lr``), plus the ``median_initial_loss``.
    """
    tasks = tasks or QuadraticTasks()
    learning_rates = list(learning_rates or log_grid(1e-4, 1.0, per_decade=4))
    dtype = next(iter(params.values())).dtype

    def problems(s: int) -> tuple:
        g = torch.Generator().manual_seed(s)
        W, y = tasks.sample_problems(num_problems, g)
        theta0 = tasks.initial_point(num_problems, g)
        return quadratic_objective(W.to(dtype), y.to(dtype)), theta0.to(dtype)

    tune_fn, tune_theta0 = problems(seed)
    test_fn, test_theta0 = problems(seed + 1)
    table: dict[str, dict[str, float]] = {}
    for name, run in (("sgd", run_sgd), ("adam", run_adam)):
        lr, _ = tune_learning_rate(run, tune_fn, tune_theta0, learning_rates, steps)
        losses = run(test_fn, test_theta0, lr, steps)
        table[name] = {"lr": lr, "median_final_loss": final_loss_median(losses)}
    losses = run_learned_optimizer(optimizer, params, test_fn, test_theta0, steps)
    table["lstm"] = {"median_final_loss": final_loss_median(losses)}
    table["initial"] = {"median_initial_loss": losses[0].median().item()}
    return table
