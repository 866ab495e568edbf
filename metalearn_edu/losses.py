"""The task loss every algorithm uses, chosen from the targets: integer class labels get the
cross-entropy of the logits, floating-point targets the mean squared error (MAML §5.1, §5.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def task_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for class labels [n] against logits [n, ways]; MSE for real targets."""
    if target.is_floating_point():
        return F.mse_loss(prediction, target)
    return F.cross_entropy(prediction, target)


def accuracy(prediction: Tensor, target: Tensor) -> Tensor:
    """Fraction of correct arg-max predictions; NaN for regression targets (no accuracy there)."""
    if target.is_floating_point():
        return torch.full((), float("nan"), dtype=prediction.dtype, device=prediction.device)
    return (prediction.argmax(dim=-1) == target).to(prediction.dtype).mean()
