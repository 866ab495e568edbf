"""ANIL, "Almost No Inner Loop" (Raghu et al. 2020): MAML whose inner loop adapts only the head,

    θ'_head = θ_head − α ∇_{θ_head} L^support(f_{θ_body, θ_head}),    θ'_body = θ_body,

while the outer loop still meta-learns every parameter (body and head) through the query loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from metalearn_edu.algorithms.maml import MAML


@dataclass
class ANIL(MAML):
    """MAML adapting only ``model.head_names`` in the inner loop."""

    @property
    def adapt_names(self) -> tuple[str, ...]:
        return tuple(self.model.head_names)
