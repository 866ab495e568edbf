"""Meta-test evaluation: adapt to each of many new tasks and score the adapted model on its query
set, reporting the mean and a 95% confidence interval as the MAML code does (600 tasks,
``ci95 = 1.96 * std / sqrt(n)``, with NumPy's population standard deviation).

The number of test-time inner steps may differ from training's (the MAML paper trains Omniglot
5-way with 1 step and tests with 3). Evaluation runs in the algorithm's ``precision`` (see
:mod:`metalearn_edu.precision`; float32 for algorithms without one), as its training did.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from metalearn_edu.algorithms.maml import MAML
from metalearn_edu.inner_loop import Params
from metalearn_edu.losses import accuracy
from metalearn_edu.models.base import FunctionalModel, check_episode
from metalearn_edu.precision import precision_context
from metalearn_edu.tasks.episode import TaskDistribution


def mean_and_ci95(values: Tensor) -> tuple[float, float]:
    """Mean and the half-width 1.96·std/√n of its 95% confidence interval."""
    values = values.double()
    std = values.std(unbiased=False).item() if values.numel() > 1 else 0.0
    return values.mean().item(), 1.96 * std / math.sqrt(values.numel())


def meta_test_tasks(
    model: FunctionalModel,
    tasks: TaskDistribution,
    num_tasks: int,
    *,
    batch_size: int = 25,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The ``num_tasks`` test tasks, one at a time, as ``(support_x, support_y, query_x, query_y)``.

    They are sampled in batches of ``batch_size`` from a generator seeded with ``seed``, so every
    evaluation with the same ``seed`` and ``batch_size`` sees the same tasks.
    """
    if num_tasks < 1 or batch_size < 1:
        raise ValueError(
            f"num_tasks and batch_size must be positive, got {num_tasks}, {batch_size}."
        )
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < num_tasks:
        episode = tasks.sample(min(batch_size, num_tasks - done), generator=generator)
        episode = episode.to(device, dtype)
        check_episode(model, episode)
        for i in range(episode.num_tasks):
            yield episode.support_x[i], episode.support_y[i], episode.query_x[i], episode.query_y[i]
        done += episode.num_tasks


def score_task(
    algorithm: MAML,
    meta_params: Params,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    *,
    inner_steps: int | None = None,
) -> dict[str, Tensor]:
    """One test task: the query ``loss`` and ``accuracy`` after adapting with ``inner_steps``
    (default: the algorithm's) first-order steps on the support set, and the same for the
    unadapted model (``pre_*``), as 0-d tensors, computed in the algorithm's precision."""
    steps = algorithm.inner_steps if inner_steps is None else inner_steps
    precision = getattr(algorithm, "precision", "float32")  # MetaLSTM has none: float32
    with precision_context(precision, support_x.device.type):
        with torch.no_grad():
            base, _ = algorithm.split(meta_params)
            before = algorithm.model.forward(base, query_x, context=support_x)
        leaves = {n: p.requires_grad_() for n, p in _fresh(meta_params).items()}
        with torch.enable_grad():
            adapted = algorithm.adapt(
                leaves, support_x, support_y, inner_steps=steps, first_order=True
            )
        with torch.no_grad():
            after = algorithm.model.forward(adapted, query_x, context=support_x)
            return {
                "loss": algorithm.loss_fn(after, query_y),
                "accuracy": accuracy(after, query_y),
                "pre_loss": algorithm.loss_fn(before, query_y),
                "pre_accuracy": accuracy(before, query_y),
            }


def evaluate(
    algorithm: MAML,
    meta_params: Params,
    tasks: TaskDistribution,
    *,
    num_tasks: int = 600,
    inner_steps: int | None = None,
    batch_size: int = 25,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Adapt with ``inner_steps`` (default: the algorithm's) on ``num_tasks`` fresh tasks.

    Returns the post-adaptation query ``loss``/``accuracy`` with ``*_ci95`` half-widths, and the
    same for the unadapted model (``pre_*``). Accuracy is NaN for regression.
    """
    steps = algorithm.inner_steps if inner_steps is None else inner_steps
    params = {n: p.detach() for n, p in meta_params.items()}
    dtype = next(iter(params.values())).dtype
    columns: dict[str, list[Tensor]] = {
        "loss": [],
        "accuracy": [],
        "pre_loss": [],
        "pre_accuracy": [],
    }
    for task in meta_test_tasks(
        algorithm.model,
        tasks,
        num_tasks,
        batch_size=batch_size,
        seed=seed,
        device=device,
        dtype=dtype,
    ):
        for name, value in score_task(algorithm, params, *task, inner_steps=steps).items():
            columns[name].append(value)
    result: dict[str, float] = {"num_tasks": num_tasks, "inner_steps": steps}
    for name, values in columns.items():
        result[name], result[f"{name}_ci95"] = mean_and_ci95(torch.stack(values))
    return result


def _fresh(params: Params) -> Params:
    return {n: p.detach().clone() for n, p in params.items()}
