"""Meta-gradients small enough to derive by hand, for checking autograd (notebook 02).

MAML's inner step (Finn et al. 2017, eq. 1) is ``θ' = θ − α ∇L_s(θ)``; its meta-objective is the
query loss after the step, ``L_q(θ')``. By the chain rule

    d L_q(θ') / dθ = (I − α ∇²L_s(θ))ᵀ ∇L_q(θ')       (the MAML meta-gradient)
    d L_q(θ') / dα = −∇L_q(θ')ᵀ ∇L_s(θ)                (the learning-rate hypergradient)

The Hessian term ``−α ∇²L_s`` is what ``create_graph=True`` keeps; first-order MAML (§5.2) drops it
and uses ``∇L_q(θ')``. For ``K`` steps the factors multiply along the path. Two problems have
exact answers in a few lines, used here to check autograd and finite differences:

**1-D quadratic.** Support loss ``L_s(θ) = ½ a (θ − c)²``, query loss ``L_q(θ) = ½ b (θ − d)²``.
A step contracts the distance to ``c``: ``θ_k − c = (1 − αa)^k (θ − c)``, so
``dθ_K/dθ = (1 − αa)^K`` and ``dθ_K/dα = −K a (1 − αa)^{K−1} (θ − c)``.

**Linear regression with θ = (w, b).** ``L(θ) = mean((w x + b − y)²) = |Aθ − y|² / n`` with rows
``A = [x, 1]`` (:func:`metalearn_edu.tasks.linear.linear_loss`); ``∇L = 2Aᵀ(Aθ − y)/n`` and the
Hessian ``H = 2AᵀA/n`` is constant. Each step is affine, ``θ_{k+1} = M θ_k + const`` with
``M = I − αH_s`` (symmetric), so ``dθ_K/dθ = M^K``, and ``u_k = dθ_k/dα`` obeys
``u_{k+1} = M u_k − ∇L_s(θ_k)``, ``u_0 = 0``.

Functions are batched over leading dimensions (tasks) and work in any floating dtype; use float64
to compare with autograd at 1e-12.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# --- 1-D quadratic ----------------------------------------------------------------------------


def half_quadratic(theta: Tensor, curvature: Tensor | float, center: Tensor | float) -> Tensor:
    """``½ a (θ − c)²``, elementwise."""
    return 0.5 * curvature * (theta - center) ** 2


def quadratic_adapt(
    theta: Tensor,
    inner_lr: Tensor | float,
    curvature: Tensor | float,
    center: Tensor | float,
    steps: int = 1,
) -> Tensor:
    """``θ_K`` after ``steps`` gradient steps on ``½ a (θ − c)²``: ``c + (1 − αa)^K (θ − c)``."""
    _check_steps(steps)
    return center + (1 - inner_lr * curvature) ** steps * (theta - center)


def quadratic_meta_gradient(
    theta: Tensor,
    inner_lr: Tensor | float,
    support: tuple[Tensor | float, Tensor | float],
    query: tuple[Tensor | float, Tensor | float],
    steps: int = 1,
    first_order: bool = False,
) -> Tensor:
    """``d/dθ ½ b (θ_K − d)²`` with ``θ_K`` from :func:`quadratic_adapt` on ``support = (a, c)``.

    Exact: ``(1 − αa)^K · b (θ_K − d)``; first order drops the factor ``(1 − αa)^K``.
    """
    (a, c), (b, d) = support, query
    adapted = quadratic_adapt(theta, inner_lr, a, c, steps)
    outer = b * (adapted - d)
    return outer if first_order else (1 - inner_lr * a) ** steps * outer


def quadratic_lr_hypergradient(
    theta: Tensor,
    inner_lr: Tensor | float,
    support: tuple[Tensor | float, Tensor | float],
    query: tuple[Tensor | float, Tensor | float],
    steps: int = 1,
) -> Tensor:
    """``d/dα ½ b (θ_K − d)²``: ``b (θ_K − d) · (−K a (1 − αa)^{K−1} (θ − c))``."""
    (a, c), (b, d) = support, query
    adapted = quadratic_adapt(theta, inner_lr, a, c, steps)
    return b * (adapted - d) * (-steps * a * (1 - inner_lr * a) ** (steps - 1) * (theta - c))


# --- linear regression, θ = (w, b) -------------------------------------------------------------


def _design(x: Tensor) -> Tensor:
    """Rows ``[x, 1]``: ``[..., n, 1] -> [..., n, 2]``."""
    return torch.cat([x, torch.ones_like(x)], dim=-1)


def linear_gradient(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``∇ mean((w x + b − y)²) = 2Aᵀ(Aθ − y)/n``: ``theta [..., 2]``, ``x, y [..., n, 1]``."""
    A = _design(x)
    residual = (A @ theta.unsqueeze(-1)) - y  # [..., n, 1]
    return (2 * A.transpose(-1, -2) @ residual).squeeze(-1) / x.shape[-2]


def linear_hessian(x: Tensor) -> Tensor:
    """``∇² mean((w x + b − y)²) = 2AᵀA/n`` (independent of θ and y): ``[..., 2, 2]``."""
    A = _design(x)
    return 2 * A.transpose(-1, -2) @ A / x.shape[-2]


def linear_adapt(
    theta: Tensor, x: Tensor, y: Tensor, inner_lr: Tensor | float, steps: int = 1
) -> Tensor:
    """``steps`` gradient steps ``θ ← θ − α ∇L_s(θ)`` (MAML eq. 1) on the support points."""
    _check_steps(steps)
    for _ in range(steps):
        theta = theta - inner_lr * linear_gradient(theta, x, y)
    return theta


def linear_meta_gradient(
    theta: Tensor,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    inner_lr: Tensor | float,
    steps: int = 1,
    first_order: bool = False,
) -> Tensor:
    """``d/dθ L_q(θ_K) = (I − αH_s)^K ∇L_q(θ_K)``; first order: ``∇L_q(θ_K)``. ``[..., 2]``."""
    adapted = linear_adapt(theta, support_x, support_y, inner_lr, steps)
    outer = linear_gradient(adapted, query_x, query_y)
    if first_order:
        return outer
    eye = torch.eye(2, dtype=theta.dtype, device=theta.device)
    M = eye - inner_lr * linear_hessian(support_x)
    return (torch.linalg.matrix_power(M, steps) @ outer.unsqueeze(-1)).squeeze(-1)


def linear_lr_hypergradient(
    theta: Tensor,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    inner_lr: Tensor | float,
    steps: int = 1,
) -> Tensor:
    """``d/dα L_q(θ_K) = ∇L_q(θ_K)ᵀ u_K`` with ``u_{k+1} = (I − αH_s) u_k − ∇L_s(θ_k)``.

    For one step this is ``−∇L_q(θ')ᵀ ∇L_s(θ)``. Returns ``[...]`` (one number per task).
    """
    _check_steps(steps)
    H = linear_hessian(support_x)
    u = torch.zeros_like(theta + torch.zeros(H.shape[:-1], dtype=theta.dtype))
    for _ in range(steps):
        g = linear_gradient(theta, support_x, support_y)
        u = u - inner_lr * (H @ u.unsqueeze(-1)).squeeze(-1) - g
        theta = theta - inner_lr * g
    return (linear_gradient(theta, query_x, query_y) * u).sum(-1)


# --- checking tools ----------------------------------------------------------------------------


def finite_difference(f: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-6) -> Tensor:
    """Central differences ``(f(x + h e_j) − f(x − h e_j)) / 2h`` of a scalar ``f``, entry by entry.

    The error is about ``h²·f'''`` (truncation) plus ``ε·|f|/h`` (rounding): in float64 with
    ``h = 1e-6`` both are far below 1e-8 for the smooth problems here.
    """
    x = x.detach()
    grad = torch.zeros_like(x)
    for j in range(x.numel()):
        step = torch.zeros_like(x)
        step.view(-1)[j] = h
        grad.view(-1)[j] = (f(x + step) - f(x - step)).item() / (2 * h)
    return grad


def graph_size(tensor: Tensor) -> int:
    """How many autograd nodes ``tensor`` depends on (its ``grad_fn`` and all nodes behind it)."""
    seen: set = set()
    stack = [tensor.grad_fn] if tensor.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions if n is not None and n not in seen)
    return len(seen)


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
