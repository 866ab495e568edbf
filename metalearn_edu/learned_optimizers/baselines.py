"""The hand-designed optimizers a learned one must beat, and a learning-rate grid search.

SGD:   θ_{t+1} = θ_t − α ∇_t.
Adam (Kingma & Ba 2015, Algorithm 1):
       m_t = β1 m_{t−1} + (1 − β1) ∇_t,     v_t = β2 v_{t−1} + (1 − β2) ∇_t²,
       θ_{t+1} = θ_t − α m̂_t / (√v̂_t + ε),  m̂_t = m_t / (1 − β1^t),  v̂_t = v_t / (1 − β2^t).

Both run on a batch of problems at once (``loss_fn`` maps ``θ [B, n]`` to ``[B]``, as in
:mod:`~.unroll`) and return the loss trajectory ``[steps + 1, B]``. A fair comparison tunes each
baseline's learning rate on *training* problems (:func:`tune_learning_rate`) and then scores every
optimizer on the same held-out problems.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.unroll import LossFn, losses_and_gradient

Runner = Callable[[LossFn, Tensor, float, int], Tensor]


def _check(lr: float, steps: int) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"the learning rate must be a positive number, got {lr!r}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")


@torch.no_grad()
def run_sgd(loss_fn: LossFn, theta0: Tensor, lr: float, steps: int) -> Tensor:
    """Losses ``[steps + 1, B]`` of plain gradient descent with step size ``lr``."""
    _check(lr, steps)
    theta = theta0.detach().clone()
    loss, grad = losses_and_gradient(loss_fn, theta)
    losses = [loss.detach()]
    for _ in range(steps):
        theta = (theta - lr * grad).detach()
        loss, grad = losses_and_gradient(loss_fn, theta)
        losses.append(loss.detach())
    return torch.stack(losses)


@torch.no_grad()
def run_adam(
    loss_fn: LossFn,
    theta0: Tensor,
    lr: float,
    steps: int,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Tensor:
    """Losses ``[steps + 1, B]`` of Adam (Algorithm 1 of Kingma & Ba) with step size ``lr``."""
    _check(lr, steps)
    beta1, beta2 = betas
    theta = theta0.detach().clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    loss, grad = losses_and_gradient(loss_fn, theta)
    losses = [loss.detach()]
    for t in range(1, steps + 1):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        theta = (theta - lr * m_hat / (v_hat.sqrt() + eps)).detach()
        loss, grad = losses_and_gradient(loss_fn, theta)
        losses.append(loss.detach())
    return torch.stack(losses)


def final_loss_median(losses: Tensor) -> float:
    """The median over problems of the last loss; +inf if any problem diverged (NaN or inf)."""
    final = losses[-1]
    if not torch.isfinite(final).all():
        return math.inf
    return final.median().item()


def tune_learning_rate(
    run: Runner,
    loss_fn: LossFn,
    theta0: Tensor,
    learning_rates: Sequence[float],
    steps: int,
) -> tuple[float, dict[float, float]]:
    """Grid search: the learning rate with the lowest median final loss, and every score."""
    if not learning_rates:
        raise ValueError("learning_rates must hold at least one learning rate.")
    scores = {
        float(lr): final_loss_median(run(loss_fn, theta0, lr, steps)) for lr in learning_rates
    }
    best = min(scores, key=scores.__getitem__)
    return best, scores


def log_grid(low: float, high: float, per_decade: int = 4) -> list[float]:
    """Learning rates spaced evenly on a log scale from ``low`` to ``high`` (both included)."""
    if not (0 < low <= high) or per_decade < 1:
        raise ValueError(
            f"need 0 < low <= high and per_decade >= 1, got {low}, {high}, {per_decade}."
        )
    count = max(1, round(math.log10(high / low) * per_decade)) + 1
    return [low * (high / low) ** (i / (count - 1)) if count > 1 else low for i in range(count)]
