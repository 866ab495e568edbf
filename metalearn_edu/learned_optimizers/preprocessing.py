"""The log/sign gradient preprocessing of Andrychowicz et al. (2016, App. A), also used by Ravi &
Larochelle (2017) on the learner's loss and gradient:

    x  ↦  ( log|x| / p,  sgn(x) )     if |x| ≥ e^{−p},
          ( −1,          e^{p} x )    otherwise.

Why: gradients span many orders of magnitude, and an LSTM's inputs should not. The first
feature is the magnitude on a log scale (divided by p so it lies near [−1, 1]), the second the
sign; tiny values, whose logarithm would blow up, are passed on linearly instead. The map is
continuous: at |x| = e^{−p} both branches give (−1, sgn x).

The paper uses p = 10 "in all experiments" (Ravi & Larochelle's code too); DeepMind's released
code uses k = 5 (``LogAndSign(k=5)``, written as clamps that give the same two branches).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

P_PAPER = 10.0
P_RELEASED_CODE = 5.0


def log_sign(x: Tensor, p: float = P_PAPER) -> Tensor:
    """The two features of every entry of ``x``: a tensor of shape ``[*x.shape, 2]``."""
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
        raise ValueError(f"the preprocessing constant p must be a positive number, got {p!r}.")
    threshold = math.exp(-p)
    large = x.abs() >= threshold
    # clamp inside the log so the unused branch never produces -inf (nor NaN gradients)
    magnitude = torch.where(large, x.abs().clamp_min(threshold).log() / p, -1.0)
    sign = torch.where(large, torch.sign(x), math.exp(p) * x)
    return torch.stack([magnitude, sign], dim=-1)
