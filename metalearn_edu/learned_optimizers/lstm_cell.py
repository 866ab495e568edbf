"""A long short-term memory cell written out (Hochreiter & Schmidhuber 1997), as a pure function of
a parameter ``dict``, so that both learned optimizers of the course share one readable cell:

    [i, f, g, o] = W_ih x + W_hh h + b          (four blocks of ``hidden`` rows each)
    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)
    h' = σ(o) ⊙ tanh(c')

The block order (i, f, g, o) and the parameter shapes are those of ``torch.nn.LSTMCell``, so the
tests can check this cell against PyTorch's.

*Coordinate-wise* use (Andrychowicz et al. 2016, §2.1): every coordinate of the optimizee is one
row of the batch. The weights are shared by all rows; the state ``(h, c)`` has one row per
coordinate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Params = dict[str, Tensor]
State = tuple[Tensor, Tensor]


def init_lstm_cell(
    input_size: int,
    hidden: int,
    generator: torch.Generator | None = None,
    prefix: str = "",
) -> Params:
    """PyTorch's initialisation U(−1/√hidden, 1/√hidden) for every weight and bias."""
    if input_size < 1 or hidden < 1:
        raise ValueError(f"input_size and hidden must be positive, got {input_size}, {hidden}.")
    bound = 1.0 / math.sqrt(hidden)
    shapes = {
        "weight_ih": (4 * hidden, input_size),
        "weight_hh": (4 * hidden, hidden),
        "bias": (4 * hidden,),
    }
    return {
        prefix + name: torch.empty(shape).uniform_(-bound, bound, generator=generator)
        for name, shape in shapes.items()
    }


def zero_state(rows: int, hidden: int, like: Tensor) -> State:
    """``(h, c)`` of zeros, one row per coordinate, with ``like``'s dtype and device."""
    zeros = torch.zeros(rows, hidden, dtype=like.dtype, device=like.device)
    return zeros, zeros.clone()


def lstm_cell(params: Params, x: Tensor, state: State, prefix: str = "") -> State:
    """One step of the cell on ``x [rows, input_size]``; returns the new ``(h, c)``."""
    h, c = state
    gates = (
        x @ params[prefix + "weight_ih"].T
        + h @ params[prefix + "weight_hh"].T
        + params[prefix + "bias"]
    )
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c
