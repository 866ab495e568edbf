"""MAML whose inner loop adapts only some layers: the experiment behind ANIL (Raghu et al. 2020).

Raghu et al. take a MAML-trained initialisation θ and, at test time, run the inner loop (MAML
eq. 1) on only some of its layers, the others frozen at θ:

    θ'_L = θ_L − α ∇_{θ_L} L^support(f_θ)   for the layers L adapted,     θ'_M = θ_M otherwise.

Adapting the head alone is ANIL's inner loop (:class:`metalearn_edu.algorithms.ANIL`); adapting
every layer is MAML's. In between, the accuracy each choice keeps says which layers' inner-loop
changes matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metalearn_edu.algorithms.maml import MAML


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name up to the first dot (``block2.conv.weight``)."""
    return name.split(".", 1)[0]


@dataclass
class AdaptOnly(MAML):
    """MAML adapting, in the inner loop, only the parameters of the named ``layers``."""

    layers: tuple[str, ...] = ("head",)
    _names: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = tuple(self.model.init())
        known = tuple(dict.fromkeys(layer_of(n) for n in names))
        unknown = [layer for layer in self.layers if layer not in known]
        if unknown or not self.layers:
            raise ValueError(
                f"layers must name at least one of the model's layers {list(known)}; "
                f"got {list(self.layers)}."
            )
        self._names = tuple(n for n in names if layer_of(n) in self.layers)

    @property
    def adapt_names(self) -> tuple[str, ...]:
        return self._names
