"""Meta-SGD (Li et al. 2017): learn the inner learning rates too, one per parameter entry,

    θ' = θ − α ∘ ∇_θ L^support(f_θ),

where ∘ is the element-wise product and α has θ's shape. The outer loop meta-learns (θ, α)
together on the query loss, exactly as MAML does for θ. The paper uses one inner step.

The meta-parameters hold θ under the model's names and α under ``"inner_lr." + name``. α starts
at ``inner_lr`` everywhere, so at initialisation Meta-SGD computes MAML's meta-gradient for θ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metalearn_edu.algorithms.maml import MAML
from metalearn_edu.inner_loop import InnerLR, Params

LR_PREFIX = "inner_lr."


@dataclass
class MetaSGD(MAML):
    """MAML with a learned per-parameter inner learning rate α."""

    def init_meta_params(self, generator: torch.Generator | None = None) -> Params:
        params = self.model.init(generator)
        lrs = {LR_PREFIX + n: torch.full_like(p, self.inner_lr) for n, p in params.items()}
        return {**params, **lrs}

    def split(self, meta_params: Params) -> tuple[Params, InnerLR]:
        params = {n: p for n, p in meta_params.items() if not n.startswith(LR_PREFIX)}
        lrs = {n[len(LR_PREFIX) :]: p for n, p in meta_params.items() if n.startswith(LR_PREFIX)}
        if set(lrs) != set(params):
            raise ValueError(
                "Meta-SGD meta-parameters need one learning rate per parameter: "
                f"missing {sorted(set(params) - set(lrs))}, extra {sorted(set(lrs) - set(params))}."
            )
        return params, lrs
