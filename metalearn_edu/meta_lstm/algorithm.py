"""Meta-LSTM few-shot learning (Ravi & Larochelle 2017), with the interface of the MAML family, so
that :func:`~metalearn_edu.training.meta_train`, :func:`~metalearn_edu.evaluation.evaluate` and the
command line run it unchanged.

One episode (``lstm-classifier.lua`` in the official code):

    θ_0 = c_0                                                       (learned initialisation)
    for t = 1 .. T:                                                  (12 updates 1-shot, 8 5-shot)
        L_t, ∇_t = loss and gradient of the learner at θ_{t−1} on the support set   (constants)
        θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t                            (:mod:`.cell`)
    meta-loss = L^query(θ_T)

The meta-loss is differentiated w.r.t. the meta-learner's weights and c_0 through the chain of
cell states and gates, but *not* through ∇_t and L_t: the learner's loss and gradients are
computed on a detached copy of θ_{t−1} and enter as constants (the official code's
``DirectNode.getValue``), so no second derivatives are needed. The meta-optimiser is Adam (lr
1e-3, the training loop's); :meth:`MetaLSTM.meta_gradient` clips the meta-gradient's total norm
to 0.25 before returning it.

Batch normalisation. The learner's batch norm has no running statistics here (the models are
functional), which matches how the official code uses it in meta-training: each forward pass
normalises with the statistics of its own batch (support batches in the inner loop, the query
batch for the meta-loss), and the running averages are reset at every episode. At test time the
official code normalises the queries with the running averages gathered over that episode's
support batches; :func:`~metalearn_edu.evaluation.evaluate` passes the support set as
``context``, so a learner built with ``transductive=False`` normalises the queries with the
support set's statistics at θ_T (those averages mix the support statistics at θ_0 .. θ_{T−1};
this is the closest functional equivalent, and, like the official evaluation, it classifies each
query independently of the others). ``meta_gradient`` calls the query forward pass without
context (batch statistics, as in meta-training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metalearn_edu.algorithms.maml import Metrics, TensorMetrics, query_metrics, read_metrics
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.optimizee import ParamShapes, flatten_params, unflatten_params
from metalearn_edu.learned_optimizers.preprocessing import P_PAPER
from metalearn_edu.losses import accuracy, task_loss
from metalearn_edu.meta_lstm.cell import (
    init_meta_learner,
    initial_state,
    meta_learner_step,
)
from metalearn_edu.models.base import FunctionalModel, check_episode
from metalearn_edu.tasks.episode import Episode

LEARNER_PREFIX = "learner."  # c_0, the learner's initialisation, under the learner's own names


@dataclass
class MetaLSTMTrace:
    """What happened in one episode's inner loop: per step t = 1 .. T, the learner's support loss
    L_t and gradient ∇_t (the meta-learner's constant inputs), and the gates f_t and i_t ``[n]``."""

    losses: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)
    forget: list[Tensor] = field(default_factory=list)
    input: list[Tensor] = field(default_factory=list)


def gates_by_parameter(trace: MetaLSTMTrace, learner: Params) -> dict[str, dict[str, Tensor]]:
    """The mean forget and input gate of each learner tensor (a layer's weight, its bias ...) at
    each step: ``{name: {"forget": [T], "input": [T]}}``. The input gate is the learned learning
    rate, the forget gate the learned decay (1: none)."""
    sizes = [(name, p.numel()) for name, p in learner.items()]
    total = sum(n for _, n in sizes)
    if any(f.numel() != total for f in trace.forget):
        raise ValueError(
            f"the trace's gates have {trace.forget[0].numel()} coordinates but the learner has "
            f"{total}."
        )
    result: dict[str, dict[str, Tensor]] = {}
    start = 0
    for name, n in sizes:
        result[name] = {
            "forget": torch.stack([f[start : start + n].mean() for f in trace.forget]),
            "input": torch.stack([i[start : start + n].mean() for i in trace.input]),
        }
        start += n
    return result


@dataclass
class MetaLSTM:
    """The Meta-LSTM meta-learner of a functional ``model`` (the learner)."""

    model: FunctionalModel
    inner_steps: int = 12
    hidden: int = 20
    p: float = P_PAPER
    clip_norm: float | None = 0.25
    loss_fn: Callable[[Tensor, Tensor], Tensor] = task_loss

    def __post_init__(self) -> None:
        if isinstance(self.inner_steps, bool) or not isinstance(self.inner_steps, int):
            raise ValueError(f"inner_steps must be a positive integer, got {self.inner_steps!r}.")
        if self.inner_steps < 1 or self.hidden < 1:
            raise ValueError(
                f"inner_steps and hidden must be positive, got {self.inner_steps}, {self.hidden}."
            )
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {self.clip_norm!r}.")

    def init_meta_params(self, generator: torch.Generator | None = None) -> Params:
        """The meta-learner's weights and c_0 (the learner's own initialisation, learned)."""
        learner = self.model.init(generator)
        meta = init_meta_learner(self.hidden, generator)
        return {**meta, **{LEARNER_PREFIX + n: p for n, p in learner.items()}}

    def split(self, meta_params: Params) -> tuple[Params, None]:
        """Meta-parameters -> (the learner's initial parameters θ_0, no fixed learning rate)."""
        learner = {
            n[len(LEARNER_PREFIX) :]: p
            for n, p in meta_params.items()
            if n.startswith(LEARNER_PREFIX)
        }
        if not learner:
            raise ValueError(
                f"the meta-parameters hold no learner initialisation ({LEARNER_PREFIX}*)."
            )
        return learner, None

    def adapt_with_trace(
        self,
        meta_params: Params,
        support_x: Tensor,
        support_y: Tensor,
        *,
        inner_steps: int | None = None,
    ) -> tuple[Params, MetaLSTMTrace]:
        """θ_T after ``inner_steps`` meta-learner updates on one task's support set; the trace."""
        steps = self.inner_steps if inner_steps is None else inner_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"inner_steps must be a positive integer, got {steps!r}.")
        learner, _ = self.split(meta_params)
        theta0, shapes = flatten_params(learner)
        state = initial_state(theta0, self.hidden)
        trace = MetaLSTMTrace()
        for _ in range(steps):
            loss, grad = self._learner_loss_and_gradient(state.theta, shapes, support_x, support_y)
            state = meta_learner_step(meta_params, state, loss, grad, self.p)
            trace.losses.append(loss)
            trace.grads.append(grad)
            trace.forget.append(state.f.detach())
            trace.input.append(state.i.detach())
        return unflatten_params(state.theta, shapes), trace

    def adapt(
        self,
        meta_params: Params,
        support_x: Tensor,
        support_y: Tensor,
        *,
        inner_steps: int | None = None,
        first_order: bool | None = None,
        gradient: str = "autograd",
    ) -> Params:
        """θ_T for one task (``first_order`` and ``gradient`` are accepted for the MAML family's
        interface; the Meta-LSTM always treats the learner's gradients as constants)."""
        adapted, _ = self.adapt_with_trace(
            meta_params, support_x, support_y, inner_steps=inner_steps
        )
        return adapted

    def _learner_loss_and_gradient(
        self, theta: Tensor, shapes: ParamShapes, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """L_t and ∇_t at a detached copy of θ_{t−1}: constants for the meta-learner."""
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_()
            loss = self.loss_fn(self.model.forward(unflatten_params(leaf, shapes), x), y)
            (grad,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), grad.detach()

    def meta_gradient(
        self, meta_params: Params, episode: Episode, *, sync: bool = True
    ) -> tuple[Params, Metrics | TensorMetrics]:
        """∇ of the mean query loss after adaptation, its total norm clipped to ``clip_norm``
        (metrics as 0-d tensors with ``sync=False``; the clipping itself reads the norm)."""
        check_episode(self.model, episode)
        leaves = {n: p.detach().requires_grad_() for n, p in meta_params.items()}
        grads = {n: torch.zeros_like(p) for n, p in leaves.items()}
        losses, accuracies = [], []
        with torch.enable_grad():
            for k in range(episode.num_tasks):
                adapted = self.adapt(leaves, episode.support_x[k], episode.support_y[k])
                prediction = self.model.forward(adapted, episode.query_x[k])
                loss = self.loss_fn(prediction, episode.query_y[k])
                task_grads = torch.autograd.grad(
                    loss, list(leaves.values()), materialize_grads=True
                )
                for name, g in zip(leaves, task_grads, strict=True):
                    grads[name] += g / episode.num_tasks
                losses.append(loss.detach())
                accuracies.append(accuracy(prediction, episode.query_y[k]).detach())
        if self.clip_norm is not None:
            total = torch.sqrt(sum((g**2).sum() for g in grads.values()))
            scale = min(1.0, self.clip_norm / (total.item() + 1e-6))
            grads = {n: g * scale for n, g in grads.items()}
        metrics = query_metrics(self, meta_params, episode)
        metrics["post_loss"] = torch.stack(losses).mean()
        metrics["post_accuracy"] = torch.stack(accuracies).mean()
        return grads, metrics if not sync else read_metrics(metrics)
