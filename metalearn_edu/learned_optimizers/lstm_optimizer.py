"""The coordinate-wise LSTM optimizer m of Andrychowicz et al. (2016, §2 and §2.1):

    θ_{t+1} = θ_t + g_t,        [g_t, h_{t+1}] = m(∇_t, h_t, φ),        ∇_t = ∇_θ f(θ_t)    (eq. 1)

m is a two-layer LSTM with 20 hidden units per layer, applied to every coordinate of θ separately:
its weights φ are shared by all coordinates, its state h has one row per coordinate. Its input is
the gradient entry, preprocessed by :func:`~.preprocessing.log_sign` (or raw, ``p=None``); a
linear layer reads the top layer's hidden state, and the update is that output times
``output_scale`` (0.1 in the paper's MNIST experiment: small steps at the start of training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import (
    Params,
    State,
    init_lstm_cell,
    lstm_cell,
    zero_state,
)
from metalearn_edu.learned_optimizers.preprocessing import P_PAPER, log_sign

OptimizerState = list[State]


@dataclass(frozen=True)
class LSTMOptimizer:
    """m(∇, h; φ): ``layers`` LSTM cells of ``hidden`` units, coordinate-wise, then a read-out.

    ``p`` is the preprocessing constant (10 in the paper, 5 in DeepMind's code); ``p=None`` feeds
    the raw gradient (the paper's quadratic experiment).
    """

    hidden: int = 20
    layers: int = 2
    p: float | None = P_PAPER
    output_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(
                f"hidden and layers must be positive, got {self.hidden}, {self.layers}."
            )
        if self.p is not None and not (math.isfinite(self.p) and self.p > 0):
            raise ValueError(f"p must be a positive number or None, got {self.p!r}.")
        if not (math.isfinite(self.output_scale) and self.output_scale > 0):
            raise ValueError(f"output_scale must be positive, got {self.output_scale!r}.")

    @property
    def input_size(self) -> int:
        return 1 if self.p is None else 2

    def init(self, generator: torch.Generator | None = None) -> Params:
        """Fresh φ: PyTorch's LSTM initialisation, a small read-out with zero bias."""
        params: Params = {}
        size = self.input_size
        for layer in range(self.layers):
            params.update(init_lstm_cell(size, self.hidden, generator, prefix=f"lstm{layer}."))
            size = self.hidden
        bound = 1.0 / math.sqrt(self.hidden)
        params["output.weight"] = torch.empty(1, self.hidden).uniform_(
            -bound, bound, generator=generator
        )
        params["output.bias"] = torch.zeros(1)
        return params

    def initial_state(self, num_coordinates: int, like: Tensor) -> OptimizerState:
        """h_0 = 0: one ``(h, c)`` pair of ``[num_coordinates, hidden]`` zeros per layer."""
        return [zero_state(num_coordinates, self.hidden, like) for _ in range(self.layers)]

    def features(self, grad: Tensor) -> Tensor:
        """The LSTM's input for every coordinate of ``grad``: ``[numel, input_size]``."""
        flat = grad.reshape(-1)
        return flat.unsqueeze(-1) if self.p is None else log_sign(flat, self.p)

    def step(
        self,
        params: Params,
        grad: Tensor,
        state: OptimizerState,
        *,
        use_triton: bool | None = None,
    ) -> tuple[Tensor, OptimizerState]:
        """g_t and h_{t+1} from ∇_t (any shape; each entry is one coordinate) and h_t (eq. 1).

        Two layers in float32 on a GPU run as one fused Triton kernel
        (:mod:`metalearn_edu.kernels.lstm_optimizer_step`, same results to float32 rounding);
        ``use_triton=False`` or ``METALEARN_EDU_TRITON=0`` keeps the PyTorch code below."""
        if len(state) != self.layers or state[0][0].shape[0] != grad.numel():
            raise ValueError(
                f"the state holds {state[0][0].shape[0] if state else 0} coordinates in "
                f"{len(state)} layers, but the gradient has {grad.numel()} entries and the "
                f"optimizer {self.layers} layers (use initial_state)."
            )
        # imported here: the kernels module imports this one (its reference)
        from metalearn_edu.kernels import lstm_optimizer_step as fused

        if fused.fused_step_applies(self, params, grad, state, use_triton=use_triton):
            return fused.lstm_optimizer_step_triton(self, params, grad, state)
        x = self.features(grad)
        new_state = []
        for layer in range(self.layers):
            h, c = lstm_cell(params, x, state[layer], prefix=f"lstm{layer}.")
            new_state.append((h, c))
            x = h
        out = x @ params["output.weight"].T + params["output.bias"]
        return self.output_scale * out.reshape(grad.shape), new_state


def first_update(optimizer: LSTMOptimizer, params: Params, grads: Tensor) -> Tensor:
    """g_1 for each entry of ``grads`` from the zero state: the learned update as a function of
    the gradient (to draw beside SGD's −α∇ and Adam's first step −α sgn ∇)."""
    with torch.no_grad():
        flat = grads.reshape(-1)
        update, _ = optimizer.step(params, flat, optimizer.initial_state(flat.numel(), flat))
    return update.reshape(grads.shape)
