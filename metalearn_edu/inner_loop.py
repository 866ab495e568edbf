"""The inner loop: a few steps of gradient descent on a task's support loss (MAML eq. 1),

    θ'_{k+1} = θ'_k − α ∘ ∇_θ L_support(θ'_k),      θ'_0 = θ,   k = 0 .. K−1,

written once and used by every algorithm in the library:

- ``second order`` (MAML): the gradients stay in the autograd graph, so a meta-gradient taken
  through θ'_K includes the Hessian terms;
- ``first_order=True`` (first-order MAML, Reptile): each gradient is treated as a constant;
- ``inner_lr`` is a number α, or a ``dict`` of per-parameter tensors (Meta-SGD's α ∘ ∇);
- ``adapt_names`` restricts adaptation to some parameters (ANIL adapts the head only); the others
  are passed through unchanged.

Gradients come from ``torch.autograd.grad`` (``gradient="autograd"``) or from ``torch.func.grad``
(``gradient="func"``), the latter needed inside ``torch.func`` transforms such as ``vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Params = dict[str, Tensor]
InnerLR = float | dict[str, Tensor]


def check_inner_settings(inner_lr: InnerLR, inner_steps: int) -> None:
    """Raise a ``ValueError`` for a step count below 1 or a step size that is not positive."""
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
        raise ValueError(f"inner_steps must be a positive integer, got {inner_steps!r}.")
    if not isinstance(inner_lr, dict):
        if not isinstance(inner_lr, (int, float)) or not math.isfinite(inner_lr) or inner_lr <= 0:
            raise ValueError(f"inner_lr must be a positive finite number, got {inner_lr!r}.")


def sgd_step(
    params: Params, grads: Params, inner_lr: InnerLR, *, use_triton: bool | None = None
) -> Params:
    """One step θ − α ∘ g on the parameters named in ``grads``; the others pass through.

    On CUDA tensors the step is one fused Triton launch for all parameters (and, under ``vmap``,
    all tasks): :mod:`metalearn_edu.kernels.inner_update`, equal to its PyTorch reference. Pass
    ``use_triton=False`` or set ``METALEARN_EDU_TRITON=0`` to run PyTorch; ``True`` requires the
    kernel (on the CPU it then needs ``TRITON_INTERPRET=1``). Elsewhere, and while
    ``torch.compile`` traces (it fuses the reference itself), PyTorch runs.
    """
    from metalearn_edu.kernels.inner_update import inner_update

    if use_triton is None and (
        torch.compiler.is_compiling() or any(g.device.type != "cuda" for g in grads.values())
    ):
        use_triton = False
    return inner_update(params, grads, inner_lr, use_triton=use_triton)


def adapt(
    support_loss: Callable[[Params], Tensor],
    params: Params,
    *,
    inner_lr: InnerLR,
    inner_steps: int,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
    gradient: str = "autograd",
) -> Params:
    """Run ``inner_steps`` SGD steps on ``support_loss(params)`` and return the adapted parameters.

    With ``gradient="autograd"`` and second order, the parameters to adapt must require grad (or
    depend on tensors that do), and the graph of each step is kept (``create_graph=True``).
    """
    check_inner_settings(inner_lr, inner_steps)
    names = list(params) if adapt_names is None else list(adapt_names)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(
            f"cannot adapt unknown parameters {unknown}; the model has {list(params)}."
        )
    if gradient not in ("autograd", "func"):
        raise ValueError(f"gradient must be 'autograd' or 'func', got {gradient!r}.")

    for _ in range(inner_steps):
        # First order: the gradient is a constant, so take it at a detached copy of the parameters
        # (nothing of its computation is recorded for the outer derivative).
        at = {n: p.detach() for n, p in params.items()} if first_order else params
        if gradient == "autograd":
            if first_order:
                at = {n: p.requires_grad_(n in names) for n, p in at.items()}
            loss = support_loss(at)
            values = torch.autograd.grad(loss, [at[n] for n in names], create_graph=not first_order)
            grads = dict(zip(names, values, strict=True))
        else:

            def loss_of_adapted(adapted: Params, at: Params = at) -> Tensor:
                return support_loss({**at, **adapted})

            grads = torch.func.grad(loss_of_adapted)({n: at[n] for n in names})
        params = sgd_step(params, grads, inner_lr)
    return params
