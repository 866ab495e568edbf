"""Plain SGD as the special case of the Meta-LSTM's cell update (Ravi & Larochelle 2017).

In eq. 2 of the paper, θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t, the input gate i_t is a learning rate and
the forget gate f_t a decay of the parameters, both chosen per coordinate and per step by the
meta-learner (:mod:`metalearn_edu.gate_schedule` reads them as a learned schedule over many
tasks). :func:`pin_gates` sets the meta-learner's
weights so that f_t = 1 and i_t = α at every step, which turns the cell update into SGD with
learning rate α.
"""

from __future__ import annotations

import math

import torch

from metalearn_edu.learned_optimizers.lstm_cell import Params

#: σ(40) rounds to exactly 1.0 in float32 and float64: a forget gate with this bias keeps θ.
FORGET_BIAS_ONE = 40.0


def pin_gates(meta_params: Params, alpha: float) -> Params:
    """A copy of ``meta_params`` whose meta-learner is SGD with learning rate ``alpha``.

    The gates read layer 1's output, θ_{t−1} and their previous value only through W_F and W_I;
    with those at zero, f_t = σ(b_F) and i_t = σ(b_I) at every step. b_F = 40 gives f_t = 1
    exactly, b_I = log(α / (1 − α)) gives i_t = α, so θ_t = θ_{t−1} − α ∇_t. The learner's
    initialisation c_0 and layer 1 are kept (layer 1 then no longer matters).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"an input gate is a sigmoid: alpha must lie in (0, 1), got {alpha!r}.")
    pinned = {name: p.detach().clone() for name, p in meta_params.items()}
    for name in ("cell.W_F", "cell.W_I"):
        pinned[name] = torch.zeros_like(pinned[name])
    pinned["cell.b_F"] = torch.full_like(pinned["cell.b_F"], FORGET_BIAS_ONE)
    pinned["cell.b_I"] = torch.full_like(pinned["cell.b_I"], math.log(alpha / (1 - alpha)))
    return pinned
