"""What every functional model provides, and the check that a task fits a model."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from metalearn_edu.tasks.episode import Episode

Params = dict[str, Tensor]


@runtime_checkable
class FunctionalModel(Protocol):
    """A model whose parameters live outside it, in a ``dict`` name -> Tensor."""

    input_shape: tuple[int, ...]
    output_dim: int
    head_names: tuple[str, ...]

    def init(self, generator: torch.Generator | None = None) -> Params: ...

    def forward(self, params: Params, x: Tensor, context: Tensor | None = None) -> Tensor: ...


def check_episode(model: FunctionalModel, episode: Episode) -> None:
    """Raise a ``ValueError`` that names the mismatch when ``episode`` does not fit ``model``."""
    for name in ("support_x", "query_x"):
        shape = tuple(getattr(episode, name).shape[2:])
        if shape != tuple(model.input_shape):
            raise ValueError(
                f"{type(model).__name__} takes inputs of shape {tuple(model.input_shape)} per "
                f"example, but the task's {name} has examples of shape {shape} "
                f"(full shape {tuple(getattr(episode, name).shape)})."
            )
    for name in ("support_y", "query_y"):
        y = getattr(episode, name)
        if y.is_floating_point():
            if tuple(y.shape[2:]) != (model.output_dim,):
                raise ValueError(
                    f"{type(model).__name__} predicts {model.output_dim} value(s) per example, "
                    f"but the task's {name} has targets of shape {tuple(y.shape[2:])} per example."
                )
        else:
            if y.dim() != 2:
                raise ValueError(
                    f"class labels in {name} must have shape [tasks, examples], "
                    f"got {tuple(y.shape)}."
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= model.output_dim):
                raise ValueError(
                    f"{type(model).__name__} has {model.output_dim} outputs (ways), but {name} "
                    f"holds labels from {int(y.min())} to {int(y.max())}."
                )
