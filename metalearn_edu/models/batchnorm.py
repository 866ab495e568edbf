"""Batch normalisation written out with an explicit mean and variance.

Why not ``torch.nn.functional.batch_norm``? Measured with torch 2.13 (CPU) and 2.11 (CUDA):
``torch.func.vmap`` over tasks around ``torch.func.grad`` through the native batch-norm kernel gives
a wrong second-order meta-gradient, while this explicit form gives the one the per-task loop and
finite differences give (``tests/test_models.py`` checks both facts).

Transductive versus not. MAML normalises with the statistics of the batch at hand: the query
examples of a task are normalised together, so each prediction depends on the other queries
(Nichol et al. call this *transduction*; it raises Omniglot accuracy by a few points). Passing
``stats_from`` computes the statistics from those examples instead (e.g. the support set), and
then each query is classified on its own.
"""

from __future__ import annotations

from torch import Tensor


def batch_norm(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    stats_from: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise ``x`` [B, C, ...] per channel: ``weight * (x - mean) / sqrt(var + eps) + bias``.

    ``mean`` and the biased ``var`` are taken over every dimension but the channel one (1), from
    ``stats_from`` when given, else from ``x`` itself.
    """
    source = x if stats_from is None else stats_from
    dims = [0, *range(2, source.dim())]
    mean = source.mean(dim=dims, keepdim=True)
    var = ((source - mean) ** 2).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean) / (var + eps).sqrt() * weight.view(shape) + bias.view(shape)
