"""Running a learned optimizer, and meta-training it by truncated back-propagation through time
(Andrychowicz et al. 2016, §2 and §3).

The meta-loss of an optimizer m with weights φ is the sum of the optimizee's losses along the
trajectory it produces (eq. 3, all weights w_t = 1):

    L(φ) = E_f [ Σ_{t=1}^{T} f(θ_t) ],      θ_{t+1} = θ_t + g_t(∇_t, h_t; φ).

Each problem is optimised for 100 steps; the trajectory is cut into truncations of 20 steps. After
each truncation the meta-gradient of that truncation's losses updates φ (Adam), and θ and the
LSTM state are *detached*: they carry on as the starting point of the next truncation, but no
gradient flows back across the boundary.

The optimizee's gradients ∇_t enter as constants (``second_derivatives=False`` in DeepMind's
code): the meta-gradient flows through θ_t and the LSTM, not through ∇_t's dependence on θ_t.

A problem is any ``loss_fn`` mapping a batch of parameter vectors ``θ [B, n]`` to the ``B``
losses ``[B]`` (problem b is scored only on θ[b]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer, OptimizerState
from metalearn_edu.tasks.quadratic import QuadraticTasks, quadratic_loss

LossFn = Callable[[Tensor], Tensor]


def losses_and_gradient(loss_fn: LossFn, theta: Tensor) -> tuple[Tensor, Tensor]:
    """f(θ) per problem (in the graph) and ∇_θ f as a constant."""
    with torch.enable_grad():
        if not theta.requires_grad:
            theta = theta.requires_grad_()
        losses = loss_fn(theta)
        (grad,) = torch.autograd.grad(losses.sum(), theta, retain_graph=True)
    return losses, grad.detach()


def unroll(
    optimizer: LSTMOptimizer,
    params: Params,
    loss_fn: LossFn,
    theta: Tensor,
    state: OptimizerState,
    steps: int,
) -> tuple[Tensor, Tensor, OptimizerState]:
    """``steps`` updates from (θ_t, h_t); returns the losses f(θ_{t+1}) .. f(θ_{t+steps})
    ``[steps, B]`` (differentiable w.r.t. ``params``), and the final θ and state (not detached)."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}.")
    _, grad = losses_and_gradient(loss_fn, theta)
    losses = []
    for _ in range(steps):
        update, state = optimizer.step(params, grad, state)
        theta = theta + update
        loss, grad = losses_and_gradient(loss_fn, theta)
        losses.append(loss)
    return torch.stack(losses), theta, state


def detach_state(theta: Tensor, state: OptimizerState) -> tuple[Tensor, OptimizerState]:
    """θ and h cut from the graph: the truncation boundary of truncated BPTT."""
    return theta.detach(), [(h.detach(), c.detach()) for h, c in state]


def truncated_meta_step(
    optimizer: LSTMOptimizer,
    params: Params,
    meta_optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    theta0: Tensor,
    *,
    optimizee_steps: int = 100,
    unroll_length: int = 20,
) -> list[float]:
    """Optimise one batch of problems from θ_0 for ``optimizee_steps`` steps, updating φ once
    per truncation of ``unroll_length`` steps; returns each truncation's meta-loss."""
    if unroll_length < 1 or optimizee_steps < unroll_length:
        raise ValueError(
            f"need 1 <= unroll_length <= optimizee_steps, got {unroll_length}, {optimizee_steps}."
        )
    if optimizee_steps % unroll_length:
        raise ValueError(
            f"optimizee_steps ({optimizee_steps}) must be a multiple of unroll_length "
            f"({unroll_length})."
        )
    theta = theta0.detach()
    state = optimizer.initial_state(theta.numel(), theta)
    meta_losses = []
    for _ in range(optimizee_steps // unroll_length):
        losses, theta, state = unroll(optimizer, params, loss_fn, theta, state, unroll_length)
        meta_loss = losses.sum(0).mean()  # Σ_t f(θ_t), averaged over the batch of problems
        meta_optimizer.zero_grad()
        meta_loss.backward()
        meta_optimizer.step()
        theta, state = detach_state(theta, state)
        meta_losses.append(meta_loss.item())
    return meta_losses


def quadratic_objective(W: Tensor, y: Tensor) -> LossFn:
    """The batch of quadratics f_b(θ) = ‖W_b θ − y_b‖² as a ``loss_fn``."""
    return lambda theta: quadratic_loss(theta, W, y)


ProblemSampler = Callable[[torch.Generator], tuple[LossFn, Tensor]]


def meta_train_optimizer(
    optimizer: LSTMOptimizer,
    sample_problems: ProblemSampler,
    iterations: int,
    *,
    params: Params | None = None,
    optimizee_steps: int = 100,
    unroll_length: int = 20,
    meta_lr: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Params, list[float]]:
    """Meta-train φ with Adam on ``iterations`` problem batches, each drawn by
    ``sample_problems(generator) -> (loss_fn, θ_0)`` and optimised by truncated BPTT. Returns φ
    (a trained copy; ``params`` is left as it was) and the per-iteration meta-loss (mean over the
    truncations)."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}.")
    if params is None:
        params = optimizer.init(torch.Generator().manual_seed(seed))
    params = {n: p.detach().clone().to(dtype).requires_grad_() for n, p in params.items()}
    meta_optimizer = torch.optim.Adam(params.values(), lr=meta_lr)
    generator = torch.Generator().manual_seed(seed + 1)
    history = []
    for _ in range(iterations):
        loss_fn, theta0 = sample_problems(generator)
        losses = truncated_meta_step(
            optimizer,
            params,
            meta_optimizer,
            loss_fn,
            theta0.to(dtype),
            optimizee_steps=optimizee_steps,
            unroll_length=unroll_length,
        )
        history.append(sum(losses) / len(losses))
    return {n: p.detach() for n, p in params.items()}, history


def meta_train_on_quadratics(
    optimizer: LSTMOptimizer,
    iterations: int,
    *,
    params: Params | None = None,
    tasks: QuadraticTasks | None = None,
    meta_batch_size: int = 128,
    optimizee_steps: int = 100,
    unroll_length: int = 20,
    meta_lr: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Params, list[float]]:
    """:func:`meta_train_optimizer` on batches of ``meta_batch_size`` random quadratics (the
    paper's §3.1 setting: 10-d, 100 steps unrolled 20 at a time, Adam at 1e-3)."""
    if meta_batch_size < 1:
        raise ValueError(f"meta_batch_size must be >= 1, got {meta_batch_size}.")
    tasks = tasks or QuadraticTasks()

    def sample_problems(generator: torch.Generator) -> tuple[LossFn, Tensor]:
        W, y = tasks.sample_problems(meta_batch_size, generator)
        theta0 = tasks.initial_point(meta_batch_size, generator)
        return quadratic_objective(W.to(dtype), y.to(dtype)), theta0

    return meta_train_optimizer(
        optimizer,
        sample_problems,
        iterations,
        params=params,
        optimizee_steps=optimizee_steps,
        unroll_length=unroll_length,
        meta_lr=meta_lr,
        seed=seed,
        dtype=dtype,
    )


@torch.no_grad()
def run_learned_optimizer(
    optimizer: LSTMOptimizer, params: Params, loss_fn: LossFn, theta0: Tensor, steps: int
) -> Tensor:
    """The losses f(θ_0) .. f(θ_steps) ``[steps + 1, B]`` along m's trajectory (no meta-graph)."""
    theta = theta0.detach()
    state = optimizer.initial_state(theta.numel(), theta)
    params = {n: p.detach() for n, p in params.items()}
    loss, grad = losses_and_gradient(loss_fn, theta)
    losses = [loss.detach()]
    for _ in range(steps):
        update, state = optimizer.step(params, grad, state)
        theta = (theta + update).detach()
        loss, grad = losses_and_gradient(loss_fn, theta)
        losses.append(loss.detach())
    return torch.stack(losses)
