"""Fully connected networks: the MAML sinusoid regressor and the learned-optimizer optimizee."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn_edu.models.base import Params

_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@dataclass(frozen=True)
class MLP:
    """``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, an activation after every layer but the last.

    ``init="truncated_normal"`` draws weights from N(0, ``init_std``²) cut at two standard
    deviations, with zero biases, as the MAML code does for the sinusoid network
    (``tf.truncated_normal(stddev=0.01)``). ``init="xavier"`` uses Glorot-uniform weights.
    """

    sizes: tuple[int, ...] = (1, 40, 40, 1)
    activation: str = "relu"
    init_scheme: str = "truncated_normal"
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or any(s < 1 for s in self.sizes):
            raise ValueError(f"MLP sizes must be at least two positive widths, got {self.sizes}.")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}."
            )
        if self.init_scheme not in ("truncated_normal", "xavier"):
            raise ValueError(
                f"init_scheme must be 'truncated_normal' or 'xavier', got {self.init_scheme!r}."
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.sizes[0],)

    @property
    def output_dim(self) -> int:
        return self.sizes[-1]

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def head_names(self) -> tuple[str, ...]:
        last = self.num_layers - 1
        return (f"layer{last}.weight", f"layer{last}.bias")

    def init(self, generator: torch.Generator | None = None) -> Params:
        params: Params = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            w = torch.empty(fan_out, fan_in)
            if self.init_scheme == "truncated_normal":
                torch.nn.init.trunc_normal_(
                    w,
                    std=self.init_std,
                    a=-2 * self.init_std,
                    b=2 * self.init_std,
                    generator=generator,
                )
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                w.uniform_(-bound, bound, generator=generator)
            params[f"layer{i}.weight"] = w
            params[f"layer{i}.bias"] = torch.zeros(fan_out)
        return params

    def forward(self, params: Params, x: Tensor, context: Tensor | None = None) -> Tensor:
        act = _ACTIVATIONS[self.activation]
        for i in range(self.num_layers):
            x = F.linear(x, params[f"layer{i}.weight"], params[f"layer{i}.bias"])
            if i < self.num_layers - 1:
                x = act(x)
        return x


def sinusoid_mlp() -> MLP:
    """The MAML sinusoid regressor: 1-40-40-1, ReLU, truncated-normal init (std 0.01)."""
    return MLP((1, 40, 40, 1), "relu", "truncated_normal", 0.01)


def optimizee_mlp(in_features: int = 784, hidden: int = 20, out_features: int = 10) -> MLP:
    """The small network learned optimizers train (Andrychowicz et al.: one hidden layer of 20
    sigmoid units on MNIST)."""
    return MLP((in_features, hidden, out_features), "sigmoid", "xavier")
