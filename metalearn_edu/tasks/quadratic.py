"""Random quadratic problems ``f(theta) = ||W theta - y||^2`` (Andrychowicz et al. 2016, §3.1).

The learned-optimizer experiments of "Learning to learn by gradient descent by gradient descent"
minimise 10-dimensional quadratics whose ``W`` (10x10) and ``y`` (10) are drawn i.i.d. from a
standard normal distribution. (DeepMind's code draws them uniformly instead; the paper's Gaussian
is used here.) The gradient is ``2 W^T (W theta - y)`` and the minimum is the least-squares
solution of ``W theta = y``.

As a ``TaskDistribution``, a quadratic is a regression task whose 10 "examples" are the rows of
``W`` with targets ``y``: ``support_x = W [T, 10, 10]``, ``support_y = y [T, 10, 1]``, and the query
set is the same function (an optimizer is scored on the problem it optimises).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import _check_size


def quadratic_loss(theta: Tensor, W: Tensor, y: Tensor) -> Tensor:
    """``||W theta - y||^2`` per problem: ``theta [..., d]``, ``W [..., d, d]``, ``y [..., d]``."""
    residual = (W @ theta.unsqueeze(-1)).squeeze(-1) - y
    return (residual**2).sum(-1)


def quadratic_gradient(theta: Tensor, W: Tensor, y: Tensor) -> Tensor:
    """``grad f(theta) = 2 W^T (W theta - y)``, batched like :func:`quadratic_loss`."""
    residual = (W @ theta.unsqueeze(-1)).squeeze(-1) - y
    return 2 * (W.transpose(-1, -2) @ residual.unsqueeze(-1)).squeeze(-1)


def quadratic_minimum(W: Tensor, y: Tensor) -> Tensor:
    """The minimiser ``argmin ||W theta - y||^2`` (least squares), batched: ``[..., d]``."""
    return torch.linalg.lstsq(W, y.unsqueeze(-1)).solution.squeeze(-1)


class QuadraticTasks:
    """Random ``dim``-dimensional quadratics with ``W, y ~ N(0, 1)`` (default ``dim = 10``)."""

    def __init__(self, dim: int = 10, init_std: float = 0.01) -> None:
        _check_size("dim", dim)
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}.")
        self.dim, self.init_std = dim, float(init_std)

    def sample_problems(
        self, meta_batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``W [T, d, d]`` and ``y [T, d]`` of ``meta_batch_size`` problems."""
        _check_size("meta_batch_size", meta_batch_size)
        W = torch.randn((meta_batch_size, self.dim, self.dim), generator=generator)
        y = torch.randn((meta_batch_size, self.dim), generator=generator)
        return W, y

    def initial_point(
        self, meta_batch_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Starting points ``theta_0 ~ N(0, init_std^2)``, ``[T, d]`` (DeepMind code: std 0.01)."""
        _check_size("meta_batch_size", meta_batch_size)
        return torch.randn((meta_batch_size, self.dim), generator=generator) * self.init_std

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        """The problems as an :class:`Episode` (rows of ``W`` as inputs, ``y`` as targets)."""
        W, y = self.sample_problems(meta_batch_size, generator)
        return Episode(W, y.unsqueeze(-1), W, y.unsqueeze(-1))
