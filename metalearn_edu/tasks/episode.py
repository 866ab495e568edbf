"""One representation of a batch of tasks, used everywhere in the library.

An *episode* holds the support set (the data the inner loop adapts on) and the query set (the
data the adapted model is scored on) of ``T`` tasks, batched over tasks in the leading dimension
so that algorithms can ``torch.func.vmap`` over it:

    support_x  [T, S, *x_shape]     support_y  [T, S, *y_shape]
    query_x    [T, Q, *x_shape]     query_y    [T, Q, *y_shape]

For classification, labels are ``int64`` in ``0..N-1`` per task (relabelled: the class a label
names differs from task to task). For regression, targets are floating point.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Episode:
    """Support and query sets of a batch of tasks, tasks along dimension 0."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def __post_init__(self) -> None:
        t = self.support_x.shape[0] if self.support_x.dim() else None
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"Episode.{f.name} must be a torch.Tensor, got {type(value).__name__}."
                )
            if value.dim() < 2 or value.shape[0] != t:
                raise ValueError(
                    f"Episode.{f.name} has shape {tuple(value.shape)}: every field needs the "
                    "tasks in dimension 0 and the examples in dimension 1, with the same number "
                    f"of tasks ({t}) in all four."
                )
        if self.support_x.shape[1] != self.support_y.shape[1]:
            raise ValueError(
                f"support_x has {self.support_x.shape[1]} examples per task but support_y has "
                f"{self.support_y.shape[1]}."
            )
        if self.query_x.shape[1] != self.query_y.shape[1]:
            raise ValueError(
                f"query_x has {self.query_x.shape[1]} examples per task but query_y has "
                f"{self.query_y.shape[1]}."
            )

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> Episode:
        """The i-th task alone, still with a leading task dimension of size 1."""
        if not -self.num_tasks <= i < self.num_tasks:
            raise IndexError(f"task index {i} is out of range for {self.num_tasks} tasks.")
        sl = slice(i, i + 1) if i != -1 else slice(-1, None)
        return Episode(*(getattr(self, f.name)[sl] for f in fields(self)))

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Episode:
        """Move to ``device``; cast floating-point fields (never integer labels) to ``dtype``."""

        def move(x: Tensor) -> Tensor:
            x = x.to(device) if device is not None else x
            return x.to(dtype) if dtype is not None and x.is_floating_point() else x

        return Episode(*(move(getattr(self, f.name)) for f in fields(self)))


@runtime_checkable
class TaskDistribution(Protocol):
    """Anything that samples batches of tasks: ``sample(meta_batch_size, generator) -> Episode``."""

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode: ...
