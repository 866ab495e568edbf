"""Fine-tuning from an initialisation: the "pretrained on all tasks" baseline of MAML and the
curves that compare it with a meta-learned initialisation.

The inner loop of MAML (eq. 1), repeated ``k`` times on the *same* K support points,

    θ'_0 = θ,      θ'_{j+1} = θ'_j − α ∇_θ L_{T_i}^{support}(f_{θ'_j}),

is what the paper's evaluation runs for k = 1 … 10 (§5.1, Fig. 3, App. C Table 2). This module
runs it for a whole batch of tasks at once (``torch.func.vmap`` of ``torch.func.grad``), without
the graph a meta-gradient would need, and records every step:

- :func:`adapted_sequence`: θ'_0, θ'_1, …, θ'_k for every task (the inner-loop *path*);
- :func:`adaptation_curve`: the query loss after 0, 1, …, k steps, per task;
- :func:`tune_inner_lr`: the step size a baseline is fine-tuned with, picked on held-out tasks
  (the paper's "automatically tuned step size");
- :func:`pretrain`: the baseline itself, one network trained by Adam on the pooled points of all
  tasks (MAML §5.1: "pretraining on all of the tasks", then fine-tuning).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metalearn_edu.inner_loop import Params
from metalearn_edu.losses import task_loss
from metalearn_edu.models.base import FunctionalModel
from metalearn_edu.tasks.episode import Episode, TaskDistribution

Loss = Callable[[Tensor, Tensor], Tensor]


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}.")


def adapted_sequence(
    model: FunctionalModel,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: Loss = task_loss,
) -> list[Params]:
    """[θ'_0, θ'_1, …, θ'_steps] for each of the ``T`` tasks of ``support_x [T, K, ...]``.

    Every entry is a parameter dict whose tensors have a leading task dimension ``T``; entry
    ``j`` holds the parameters after ``j`` SGD steps of MAML eq. (1) on each task's support set.
    Nothing is kept for a meta-gradient (the result is detached).
    """
    _check_steps(steps)
    if not (inner_lr > 0 and math.isfinite(inner_lr)):
        raise ValueError(f"inner_lr must be a positive finite number, got {inner_lr!r}.")
    num_tasks = support_x.shape[0]
    current = {
        n: p.detach().unsqueeze(0).expand(num_tasks, *p.shape).clone() for n, p in params.items()
    }

    def support_loss(p: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(model.forward(p, x, context=x), y)

    grad = torch.func.vmap(torch.func.grad(support_loss))
    sequence = [current]
    for _ in range(steps):
        g = grad(current, support_x, support_y)
        current = {n: current[n] - inner_lr * g[n] for n in current}
        sequence.append(current)
    return sequence


def adaptation_curve(
    model: FunctionalModel,
    params: Params,
    episode: Episode,
    *,
    inner_lr: float,
    steps: int,
    loss_fn: Loss = task_loss,
) -> Tensor:
    """Query loss after 0, 1, …, ``steps`` inner steps: a ``[steps + 1, T]`` tensor.

    Row ``k`` is L_{T_i}^{query}(f_{θ'_k}) for every task i, with θ'_k from
    :func:`adapted_sequence` (every step reuses the same support points, as in the paper).
    """
    sequence = adapted_sequence(
        model,
        params,
        episode.support_x,
        episode.support_y,
        inner_lr=inner_lr,
        steps=steps,
        loss_fn=loss_fn,
    )

    def query_loss(p: Params, qx: Tensor, qy: Tensor, sx: Tensor) -> Tensor:
        return loss_fn(model.forward(p, qx, context=sx), qy)

    losses = torch.func.vmap(query_loss)
    with torch.no_grad():
        return torch.stack(
            [losses(p, episode.query_x, episode.query_y, episode.support_x) for p in sequence]
        )


def tune_inner_lr(
    model: FunctionalModel,
    params: Params,
    episode: Episode,
    candidates: Sequence[float],
    *,
    steps: int,
    loss_fn: Loss = task_loss,
) -> float:
    """The candidate step size with the lowest query loss averaged over 1 … ``steps`` steps.

    A step size that diverges (a non-finite loss) is never chosen. This is how the baseline
    gets the paper's "automatically tuned step size": pick it on held-out tasks, then evaluate.
    """
    if not candidates:
        raise ValueError("tune_inner_lr needs at least one candidate step size.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}.")
    best, best_loss = None, math.inf
    for lr in candidates:
        curve = adaptation_curve(model, params, episode, inner_lr=lr, steps=steps, loss_fn=loss_fn)
        score = curve[1:].mean().item()
        if math.isfinite(score) and score < best_loss:
            best, best_loss = float(lr), score
    if best is None:
        raise FloatingPointError(f"every candidate step size diverged: {list(candidates)}.")
    return best


def pretrain(
    model: FunctionalModel,
    tasks: TaskDistribution,
    iterations: int,
    *,
    meta_batch_size: int = 25,
    lr: float = 1e-3,
    seed: int = 0,
    loss_fn: Loss = task_loss,
) -> tuple[Params, list[float]]:
    """The "pretrained on all tasks" baseline (MAML §5.1): one network, trained by Adam on the
    support and query points of ``meta_batch_size`` fresh tasks per iteration, pooled as one
    ordinary data set. Returns the parameters and the loss of every iteration.

    With no task information in its input, the best such a network can do is predict the mean
    target over tasks at each x; fine-tuning it on K points is then the transfer-learning answer.
    """
    if iterations < 0 or meta_batch_size < 1:
        raise ValueError(
            f"iterations must be >= 0 and meta_batch_size >= 1, "
            f"got {iterations} and {meta_batch_size}."
        )
    params = {
        n: p.requires_grad_() for n, p in model.init(torch.Generator().manual_seed(seed)).items()
    }
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    history: list[float] = []
    for _ in range(iterations):
        episode = tasks.sample(meta_batch_size, generator=generator)
        x = torch.cat([episode.support_x, episode.query_x], dim=1).flatten(0, 1)
        y = torch.cat([episode.support_y, episode.query_y], dim=1).flatten(0, 1)
        loss = loss_fn(model.forward(params, x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return {n: p.detach() for n, p in params.items()}, history
