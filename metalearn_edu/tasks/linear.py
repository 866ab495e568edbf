"""Two-parameter linear regression tasks ``y = w x + b + noise``.

With only two parameters ``theta = (w, b)``, the loss of a task is a surface over the plane, so a
notebook can draw its contours and the inner-loop path of gradient descent on it (MAML eq. 1,
``theta' = theta - alpha grad L(theta)``) together with the meta-learned starting point.

A task has slope ``w ~ U[weight_range]``, intercept ``b ~ U[bias_range]``, inputs
``x ~ U[input_range]`` and Gaussian noise of standard deviation ``noise_std`` on the targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import _check_range, _check_size, _uniform


def linear_loss(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error of ``theta = (w, b)`` on points ``x, y`` (each ``[..., K, 1]``).

    ``theta`` is ``[..., 2]``; leading dimensions broadcast, so a grid of parameters
    ``[G, G, 2]`` against one task's points ``[K, 1]`` gives the loss surface ``[G, G]``.
    """
    w, b = theta[..., 0, None, None], theta[..., 1, None, None]
    return ((w * x + b - y) ** 2).mean(dim=(-2, -1))


def least_squares(x: Tensor, y: Tensor) -> Tensor:
    """The minimiser ``(w, b)`` of :func:`linear_loss`, in closed form, batched: ``[..., 2]``.

    Solves the normal equations of ``[x 1] theta = y`` (``w = cov(x, y) / var(x)``,
    ``b = mean(y) - w mean(x)``).
    """
    x, y = x[..., 0], y[..., 0]
    mx, my = x.mean(-1, keepdim=True), y.mean(-1, keepdim=True)
    w = ((x - mx) * (y - my)).sum(-1) / ((x - mx) ** 2).sum(-1)
    b = my[..., 0] - w * mx[..., 0]
    return torch.stack([w, b], dim=-1)


class LinearTasks:
    """The ``TaskDistribution`` of 1-d linear regression tasks (targets ``[T, K, 1]``)."""

    def __init__(
        self,
        support_size: int = 10,
        query_size: int = 10,
        weight_range: tuple[float, float] = (-2.0, 2.0),
        bias_range: tuple[float, float] = (-2.0, 2.0),
        input_range: tuple[float, float] = (-2.0, 2.0),
        noise_std: float = 0.1,
    ) -> None:
        _check_size("support_size", support_size)
        _check_size("query_size", query_size)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
        self.support_size, self.query_size, self.noise_std = (
            support_size,
            query_size,
            float(noise_std),
        )
        self.weight_range = _check_range("weight_range", weight_range)
        self.bias_range = _check_range("bias_range", bias_range)
        self.input_range = _check_range("input_range", input_range)

    def sample_parameters(
        self, meta_batch_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """True ``(w, b)`` of ``meta_batch_size`` tasks: ``float32 [T, 2]``."""
        _check_size("meta_batch_size", meta_batch_size)
        w = _uniform((meta_batch_size,), *self.weight_range, generator)
        b = _uniform((meta_batch_size,), *self.bias_range, generator)
        return torch.stack([w, b], dim=-1)

    def episode(self, theta: Tensor, generator: torch.Generator | None = None) -> Episode:
        """Noisy support and query points of the tasks with true parameters ``theta [T, 2]``."""
        theta = torch.as_tensor(theta, dtype=torch.float32).reshape(-1, 2)
        T = theta.shape[0]
        w, b = theta[:, 0, None, None], theta[:, 1, None, None]

        def points(n: int) -> tuple[Tensor, Tensor]:
            x = _uniform((T, n, 1), *self.input_range, generator)
            noise = torch.randn((T, n, 1), generator=generator) * self.noise_std
            return x, w * x + b + noise

        support_x, support_y = points(self.support_size)
        query_x, query_y = points(self.query_size)
        return Episode(support_x, support_y, query_x, query_y)

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        return self.episode(self.sample_parameters(meta_batch_size, generator), generator)
