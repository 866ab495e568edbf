"""First-order MAML (Finn et al. 2017, §5.2): the MAML meta-gradient with the inner gradients
treated as constants, so dθ'_i/dθ ≈ I and

    ∇_θ L^query(f_θ'_i) ≈ ∇_θ' L^query(f_θ'_i),

which drops the Hessian-vector products ("roughly 33% speed-up" in the paper). Everything else is
MAML's; the inner loop is the shared one with ``first_order=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

from metalearn_edu.algorithms.maml import MAML


@dataclass
class FOMAML(MAML):
    """MAML with ``first_order=True``."""

    first_order: bool = True
