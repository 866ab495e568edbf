"""Sinusoid regression tasks, exactly as in MAML (Finn et al. 2017, §5.1 and the official code).

A task is the function ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5.0]`` and phase
``phi ~ U[0, pi]``; inputs are ``x ~ U[-5, 5]`` for both support and query points. The MAML code
draws ``K`` support and ``K`` query points per task (``update_batch_size * 2``); here both sizes
are arguments.

``sample_parameters`` and ``episode`` expose the two halves of ``sample`` so that a notebook can
draw the true curves of the tasks it trains on, or put every support point in one half of the
input range (the paper's extrapolation demo, Fig. 2) with ``support_range=(-5, 0)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metalearn_edu.tasks.episode import Episode


def _uniform(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None
) -> Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def _check_range(name: str, r: tuple[float, float]) -> tuple[float, float]:
    low, high = float(r[0]), float(r[1])
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {r!r}.")
    return low, high


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


class SinusoidTasks:
    """The ``TaskDistribution`` of MAML's sinusoid regression (targets ``[T, K, 1]``)."""

    def __init__(
        self,
        support_size: int = 10,
        query_size: int = 10,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        input_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        _check_size("support_size", support_size)
        _check_size("query_size", query_size)
        self.support_size, self.query_size = support_size, query_size
        self.amplitude_range = _check_range("amplitude_range", amplitude_range)
        self.phase_range = _check_range("phase_range", phase_range)
        self.input_range = _check_range("input_range", input_range)

    def __repr__(self) -> str:
        return (
            f"SinusoidTasks(support_size={self.support_size}, query_size={self.query_size}, "
            f"amplitude_range={self.amplitude_range}, phase_range={self.phase_range}, "
            f"input_range={self.input_range})"
        )

    @staticmethod
    def function(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
        """``A sin(x - phi)``; ``amplitude`` and ``phase`` are ``[T]``, ``x`` is ``[T, ...]``."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        return amplitude.reshape(shape) * torch.sin(x - phase.reshape(shape))

    def sample_parameters(
        self, meta_batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Amplitudes and phases of ``meta_batch_size`` tasks, each ``float32 [T]``."""
        _check_size("meta_batch_size", meta_batch_size)
        amplitude = _uniform((meta_batch_size,), *self.amplitude_range, generator)
        phase = _uniform((meta_batch_size,), *self.phase_range, generator)
        return amplitude, phase

    def episode(
        self,
        amplitude: Tensor,
        phase: Tensor,
        generator: torch.Generator | None = None,
        support_range: tuple[float, float] | None = None,
    ) -> Episode:
        """Support and query points of the given tasks.

        ``support_range`` (default: ``input_range``) restricts where the support inputs are drawn,
        e.g. ``(-5, 0)`` for "all K points in one half of the range"; query inputs always cover
        ``input_range``.
        """
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32).reshape(-1)
        phase = torch.as_tensor(phase, dtype=torch.float32).reshape(-1)
        if amplitude.shape != phase.shape:
            raise ValueError(
                f"amplitude {tuple(amplitude.shape)} and phase {tuple(phase.shape)} differ."
            )
        T = amplitude.shape[0]
        s_range = (
            self.input_range
            if support_range is None
            else _check_range("support_range", support_range)
        )
        support_x = _uniform((T, self.support_size, 1), *s_range, generator)
        query_x = _uniform((T, self.query_size, 1), *self.input_range, generator)
        return Episode(
            support_x=support_x,
            support_y=self.function(support_x, amplitude, phase),
            query_x=query_x,
            query_y=self.function(query_x, amplitude, phase),
        )

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        """``meta_batch_size`` random tasks: parameters first, then their points."""
        amplitude, phase = self.sample_parameters(meta_batch_size, generator)
        return self.episode(amplitude, phase, generator)
