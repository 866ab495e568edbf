"""The MAML family: MAML, first-order MAML, Reptile, Meta-SGD and ANIL, all on one inner loop.

Each algorithm offers ``init_meta_params(generator)``, ``adapt(meta_params, support_x,
support_y)`` and ``meta_gradient(meta_params, episode) -> (gradients, metrics)``; the training
loop hands the gradients to the outer optimiser.
"""

from __future__ import annotations

from metalearn_edu.algorithms.anil import ANIL
from metalearn_edu.algorithms.fomaml import FOMAML
from metalearn_edu.algorithms.maml import (
    MAML,
    choose_execution,
    maml_functional,
    maml_loop,
    maml_vmap,
)
from metalearn_edu.algorithms.metasgd import MetaSGD
from metalearn_edu.algorithms.reptile import Reptile

ALGORITHMS: dict[str, type[MAML]] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "reptile": Reptile,
    "metasgd": MetaSGD,
    "anil": ANIL,
}

__all__ = [
    "ALGORITHMS",
    "ANIL",
    "FOMAML",
    "MAML",
    "MetaSGD",
    "Reptile",
    "choose_execution",
    "maml_functional",
    "maml_loop",
    "maml_vmap",
]
