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

Memory: a second-order inner loop keeps every step's graph (the activations of the forward pass
and of the gradient's own backward pass) until the meta-gradient is taken, so memory grows
linearly with K. ``checkpoint=True`` (gradient checkpointing, Chen et al. 2016) keeps only each
step's input θ'_k and recomputes the step's graph when the meta-gradient passes through it
(:class:`CheckpointedStep`): memory stays flat in K for about one extra forward-and-gradient
computation per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

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
    checkpoint: bool = False,
) -> Params:
    """Run ``inner_steps`` SGD steps on ``support_loss(params)`` and return the adapted parameters.

    With ``gradient="autograd"`` and second order, the parameters to adapt must require grad (or
    depend on tensors that do), and the graph of each step is kept (``create_graph=True``), or,
    with ``checkpoint=True``, recomputed step by step in the backward pass (same result).
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
    if checkpoint and gradient != "autograd":
        raise ValueError(
            "checkpoint=True needs gradient='autograd': the checkpointed step calls "
            "torch.autograd.grad, which does not run inside torch.func transforms "
            "(use the 'loop' execution)."
        )

    for _ in range(inner_steps):
        if checkpoint and not first_order and torch.is_grad_enabled():
            params = checkpointed_step(support_loss, params, names, inner_lr)
        else:
            params = inner_step(support_loss, params, names, inner_lr, first_order, gradient)
    return params


def inner_step(
    support_loss: Callable[[Params], Tensor],
    params: Params,
    names: Sequence[str],
    inner_lr: InnerLR,
    first_order: bool,
    gradient: str,
) -> Params:
    """One step θ'_{k+1} = θ'_k − α ∘ ∇ L_support(θ'_k) on the parameters named in ``names``."""
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
    return sgd_step(params, grads, inner_lr)


def checkpointed_step(
    support_loss: Callable[[Params], Tensor],
    params: Params,
    names: Sequence[str],
    inner_lr: InnerLR,
) -> Params:
    """:func:`inner_step` (second order) through :class:`CheckpointedStep`: the same value and
    meta-gradient, but nothing of the step's graph is kept between the forward and backward pass.

    ``support_loss`` must reach every tensor that needs a meta-gradient through its argument (as
    the algorithms' losses do: they close over data only).
    """
    all_names = list(params)
    lrs = [inner_lr[n] for n in names] if isinstance(inner_lr, dict) else []

    def step(values: Sequence[Tensor], lr_values: Sequence[Tensor], create_graph: bool):
        at = dict(zip(all_names, values, strict=True))
        grads = torch.autograd.grad(
            support_loss(at), [at[n] for n in names], create_graph=create_graph
        )
        rates = lr_values if lrs else [inner_lr] * len(names)
        return [at[n] - lr * g for n, lr, g in zip(names, rates, grads, strict=True)]

    adapted = CheckpointedStep.apply(step, len(all_names), *params.values(), *lrs)
    return {**params, **dict(zip(names, adapted, strict=True))}


def step_vjp(
    support_loss: Callable[[Tensor], Tensor], theta: Tensor, v: Tensor, inner_lr: float
) -> Tensor:
    """Pull v = ∂L_meta/∂θ'_{k+1} back through one step θ'_{k+1} = θ − α ∇L(θ) (one tensor θ):

        ∂L_meta/∂θ = v − α ∇²L(θ) v,

    with the Hessian-vector product ∇²L(θ) v taken by differentiating ⟨∇L(θ), v⟩ (Pearlmutter
    1994): the Hessian itself is never formed. This is what :class:`CheckpointedStep` computes in
    its backward pass, for every parameter tensor at once.
    """
    theta = theta.detach().requires_grad_()
    with torch.enable_grad():
        (g,) = torch.autograd.grad(support_loss(theta), theta, create_graph=True)
        (hv,) = torch.autograd.grad(g, theta, v)
    return v - inner_lr * hv


class CheckpointedStep(torch.autograd.Function):
    """One second-order inner step θ'_{k+1} = θ'_k − α ∘ ∇L(θ'_k) that stores only its inputs.

    Forward: the step computed without a graph (the inner gradient as a constant), only θ'_k (and
    Meta-SGD's α) saved. Backward: the step is recomputed *with* its graph
    (``create_graph=True``), and the incoming v = ∂L_meta/∂θ'_{k+1} is pulled back through it,

        ∂L_meta/∂θ'_k = v − α ∘ (∇²L(θ'_k) v),      ∂L_meta/∂α = −v ∘ ∇L(θ'_k),

    a Hessian-vector product, after which the recomputed graph is freed. So a K-step inner loop
    holds K parameter vectors instead of K step graphs. Its backward is not itself differentiable
    (enough for MAML's meta-gradient; not for a Hessian of the meta-loss).
    """

    @staticmethod
    def forward(
        ctx: Any, step: Callable[..., list[Tensor]], num_params: int, *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.step, ctx.num_params = step, num_params
        ctx.save_for_backward(*tensors)
        with torch.enable_grad():
            values = [t.detach().requires_grad_() for t in tensors[:num_params]]
            lr_values = [t.detach() for t in tensors[num_params:]]
            out = step(values, lr_values, False)
        return tuple(o.detach() for o in out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_() for t in tensors]
            out = ctx.step(inputs[: ctx.num_params], inputs[ctx.num_params :], True)
            wanted = [i for i, need in enumerate(ctx.needs_input_grad[2:]) if need]
            grads = torch.autograd.grad(
                out, [inputs[i] for i in wanted], grad_outputs, allow_unused=True
            )
        result: list[Tensor | None] = [None] * len(tensors)
        for i, g in zip(wanted, grads, strict=True):
            result[i] = g
        return (None, None, *result)
