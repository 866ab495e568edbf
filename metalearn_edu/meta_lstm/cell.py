"""The meta-learner of Ravi & Larochelle (2017), one step, as pure functions of a ``dict``.

The observation behind it: the learner's gradient step θ_t = θ_{t−1} − α_t ∇_t looks like the cell
update of an LSTM (Ravi & Larochelle eq. 2),

    c_t = f_t ⊙ c_{t−1} + i_t ⊙ c̃_t,      with   c_t = θ_t,   c̃_t = −∇_t,

so the *cell state is the learner's parameter vector*, the input gate i_t is a learned, per
coordinate and per step learning rate, and the forget gate f_t a learned shrinking of the
parameters (weight decay when f_t < 1). With f_t = 1 and i_t = α it is exactly SGD.

As in the official code (``meta-learner-lstm.lua``), the meta-learner is two layers, both
*coordinate-wise* (weights shared by every coordinate of θ, state per coordinate):

1. a standard LSTM (:func:`~metalearn_edu.learned_optimizers.lstm_cell.lstm_cell`) with 20 hidden
   units whose 4 inputs are the log/sign-preprocessed loss (2 features, the same for every
   coordinate) and gradient entry (2 features);
2. the meta-learner cell, whose gates read layer 1's output h, the current parameter θ_{t−1} and
   the gate's own previous value:

       f_t = σ(W_F · [h_t, θ_{t−1}, f_{t−1}] + b_F),
       i_t = σ(W_I · [h_t, θ_{t−1}, i_{t−1}] + b_I),
       θ_t = c_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t.

Initialisation (official code): b_F ~ U(4, 5) and b_I ~ U(−5, −4), "so that model starts with
gradient descent" (f ≈ 0.99: hardly any decay; i ≈ 0.01: a small learning rate); every other
weight ~ U(−0.01, 0.01). The initial cell state c_0, the learner's initialisation, is learned too.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import Params, lstm_cell
from metalearn_edu.learned_optimizers.preprocessing import P_PAPER, log_sign

INPUT_FEATURES = 4  # preprocessed loss (2) + preprocessed gradient (2)


class MetaLearnerState(NamedTuple):
    """Per coordinate: layer 1's (h, c) ``[n, hidden]``, and layer 2's f, i and θ = c ``[n]``."""

    h: Tensor
    c: Tensor
    f: Tensor
    i: Tensor
    theta: Tensor


def init_meta_learner(hidden: int = 20, generator: torch.Generator | None = None) -> Params:
    """The meta-learner's weights but c_0: U(−0.01, 0.01), gate biases as the official code."""
    if hidden < 1:
        raise ValueError(f"hidden must be positive, got {hidden}.")

    def uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
        return torch.empty(shape).uniform_(low, high, generator=generator)

    return {
        "lstm.weight_ih": uniform((4 * hidden, INPUT_FEATURES), -0.01, 0.01),
        "lstm.weight_hh": uniform((4 * hidden, hidden), -0.01, 0.01),
        "lstm.bias": uniform((4 * hidden,), -0.01, 0.01),
        "cell.W_F": uniform((hidden + 2,), -0.01, 0.01),
        "cell.W_I": uniform((hidden + 2,), -0.01, 0.01),
        "cell.b_F": uniform((1,), 4.0, 5.0),
        "cell.b_I": uniform((1,), -5.0, -4.0),
    }


def initial_state(theta0: Tensor, hidden: int) -> MetaLearnerState:
    """Episode start: layer 1's state and the previous gates are 0; the cell state is θ_0 = c_0."""
    if theta0.dim() != 1:
        raise ValueError(
            f"theta0 must be a flat parameter vector, got shape {tuple(theta0.shape)}."
        )
    n = theta0.shape[0]
    zeros = torch.zeros(n, hidden, dtype=theta0.dtype, device=theta0.device)
    gate = torch.zeros(n, dtype=theta0.dtype, device=theta0.device)
    return MetaLearnerState(zeros, zeros.clone(), gate, gate.clone(), theta0)


def cell_update(theta: Tensor, grad: Tensor, f: Tensor, i: Tensor) -> Tensor:
    """Ravi & Larochelle eq. 2 with c̃_t = −∇_t:  θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t."""
    return f * theta - i * grad


def gates(params: Params, h: Tensor, state: MetaLearnerState) -> tuple[Tensor, Tensor]:
    """f_t and i_t ``[n]`` from layer 1's output ``h [n, hidden]``, θ_{t−1} and f_{t−1}, i_{t−1}."""
    hidden = h.shape[-1]
    w_f, w_i = params["cell.W_F"], params["cell.W_I"]
    # W · [h, θ, previous gate] as three terms: no [n, hidden + 2] copy of h for each gate
    f = torch.sigmoid(
        h @ w_f[:hidden]
        + w_f[hidden] * state.theta
        + w_f[hidden + 1] * state.f
        + params["cell.b_F"]
    )
    i = torch.sigmoid(
        h @ w_i[:hidden]
        + w_i[hidden] * state.theta
        + w_i[hidden + 1] * state.i
        + params["cell.b_I"]
    )
    return f, i


def meta_learner_step(
    params: Params,
    state: MetaLearnerState,
    loss: Tensor,
    grad: Tensor,
    p: float = P_PAPER,
    *,
    use_triton: bool | None = None,
) -> MetaLearnerState:
    """One learner update: the learner's loss (a scalar) and gradient ``[n]`` at θ_{t−1} in,
    the next state (whose ``theta`` is θ_t) out. ``loss`` and ``grad`` should be constants
    (detached), as in the official code.

    In float32 on a GPU the whole step runs as one fused Triton kernel
    (:mod:`metalearn_edu.kernels.meta_lstm_step`, same results to float32 rounding);
    ``use_triton=False`` or ``METALEARN_EDU_TRITON=0`` keeps the PyTorch code below."""
    if grad.shape != state.theta.shape:
        raise ValueError(
            f"the gradient has shape {tuple(grad.shape)} but the learner has "
            f"{tuple(state.theta.shape)} parameters."
        )
    # imported here: the kernels module imports this one (its reference)
    from metalearn_edu.kernels import meta_lstm_step as fused

    if fused.fused_step_applies(params, state, loss, grad, use_triton=use_triton):
        return fused.meta_lstm_step_triton(params, state, loss, grad, p)
    n = grad.shape[0]
    x = torch.cat([log_sign(loss.reshape(1), p).expand(n, 2), log_sign(grad, p)], dim=-1)
    h, c = lstm_cell(params, x, (state.h, state.c), prefix="lstm.")
    f, i = gates(params, h, state)
    return MetaLearnerState(h, c, f, i, cell_update(state.theta, grad, f, i))
