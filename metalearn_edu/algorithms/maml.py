"""MAML (Finn, Abbeel & Levine 2017), with its meta-gradient computed three ways.

Inner loop, eq. (1): for each task T_i, a few gradient steps on the support loss,

    θ'_i = θ − α ∇_θ L_{T_i}^{support}(f_θ).

Meta-objective (§2.2): the query loss of the adapted models, minimised over θ with Adam,

    min_θ  Σ_{T_i ~ p(T)}  L_{T_i}^{query}(f_{θ'_i}),

whose gradient goes *through* the inner loop (second derivatives unless ``first_order``).

The three executions compute the same meta-gradient (``tests/test_maml.py`` checks they agree to
1e-10 in float64, and against a closed form and finite differences):

(a) ``"loop"``: a Python loop over tasks, ``torch.autograd.grad(create_graph=True)`` inside;
(b) ``"functional"``: the same loop, each task's gradient from ``torch.func.grad`` of a pure
    function of the parameters (``torch.func.functional_call`` does this for an ``nn.Module``;
    our models are already functions of a parameter dict);
(c) ``"vmap"``: (b)'s per-task gradient function, ``torch.func.vmap``-ed over the task dimension;
(d) ``"compiled"``: (c) under ``torch.compile(fullgraph=True)`` (one graph, or an error: a graph
    break would hand the whole vmapped function back to eager PyTorch; compiled once per input
    shape and dtype, then reused; the first call pays the compilation: about 20 s for the sinusoid
    MLP on a 2-core CPU, where it then runs a meta-iteration about 6x faster than (c)).

``vmap_chunk_size=c`` runs (c) and (d) on ``c`` tasks at a time (peak memory of ``c`` tasks, same
result).

``checkpoint_inner=True`` recomputes each inner step's graph in the backward pass instead of keeping
it (gradient checkpointing; see :mod:`metalearn_edu.inner_loop`): the same meta-gradient,
with memory flat in the number of inner steps. It runs with the loop execution.

``execution="auto"`` picks per device and model, from ``python -m metalearn_edu.bench``
(``data/benchmarks/maml_cpu.json``: a 2-core CPU, one thread, float32):

- Conv4 on a CPU (Omniglot 5-way 1-shot, meta-batch 8): vmap needs 3.3 to 4.1 times the loop's
  peak memory (1.0-1.4 GB against 0.29-0.35 GB) and is no faster (0.75x to 0.97x the loop's
  speed across 1 and 5 steps, first and second order): the loop.
- MLP on a CPU (sinusoid, meta-batch 25): vmap is 4.5x (first order) to 6.4x (second order)
  faster than the loop. It costs about 70 MB once (torch.func's own, the same for 25 or 200 tasks,
  also paid by "functional"): vmap.
- On a GPU, vmap (the issue's H200 figures: 22 it/s against 1.85 for a per-task loop, at 6.1 GB
  against 0.15 GB; this library on an H200, ``data/benchmarks/maml_NVIDIA_H200.json``: 17.6 it/s
  against 1.64, at 2.6 GB against 0.41 GB).

``precision`` ("float32", "tf32" or "bf16"; see :mod:`metalearn_edu.precision`) is the arithmetic
of the meta-gradient and its metrics; parameters and meta-gradients stay in their own dtype.
``channels_last=True`` asks the model to lay its activations out channels-last (NHWC, faster
cuDNN convolutions on a GPU; see :class:`metalearn_edu.models.Conv4`): the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from metalearn_edu.inner_loop import InnerLR, Params, adapt, check_inner_settings
from metalearn_edu.kernels._dispatch import reference_only
from metalearn_edu.losses import accuracy, task_loss
from metalearn_edu.models.base import FunctionalModel, check_episode
from metalearn_edu.precision import check_precision, precision_context
from metalearn_edu.tasks.episode import Episode

EXECUTIONS = ("auto", "loop", "functional", "vmap", "compiled")

# execution="auto" on a CPU, by model class (see the module docstring; others use the loop)
CPU_EXECUTION = {"MLP": "vmap", "Conv4": "loop"}

Metrics = dict[str, float]
TensorMetrics = dict[str, Tensor]  # the same, as 0-d tensors still on the device


def read_metrics(metrics: TensorMetrics) -> Metrics:
    """0-d metric tensors -> Python floats, read back from the device in one transfer."""
    values = torch.stack([v.detach().to(torch.float64) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))


def choose_execution(model: FunctionalModel, device: torch.device) -> str:
    """The execution ``"auto"`` resolves to for ``model`` on ``device``."""
    if device.type == "cuda":
        return "vmap"
    return CPU_EXECUTION.get(type(model).__name__, "loop")


@dataclass
class MAML:
    """Second-order MAML. ``meta_gradient`` returns ∇_θ of the mean query loss over the tasks."""

    model: FunctionalModel
    inner_lr: float = 0.01
    inner_steps: int = 1
    first_order: bool = False
    execution: str = "auto"
    loss_fn: Callable[[Tensor, Tensor], Tensor] = task_loss
    checkpoint_inner: bool = False
    vmap_chunk_size: int | None = None  # tasks per vmap chunk when memory is short (None: all)
    # torch.compile's mode for the "compiled" execution ("reduce-overhead": CUDA graphs)
    compile_mode: str | None = None
    precision: str = "float32"  # "float32", "tf32" (CUDA) or "bf16" (metalearn_edu.precision)
    channels_last: bool = False  # NHWC activations in the model (Conv4's channels_last)

    def __post_init__(self) -> None:
        check_inner_settings(self.inner_lr, self.inner_steps)
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {self.execution!r}.")
        if self.checkpoint_inner and self.execution not in ("auto", "loop"):
            raise ValueError(
                f"checkpoint_inner=True runs with the 'loop' execution, not {self.execution!r}: "
                "the checkpointed inner step does not run inside torch.func transforms."
            )
        if self.vmap_chunk_size is not None and self.vmap_chunk_size < 1:
            raise ValueError(f"vmap_chunk_size must be positive, got {self.vmap_chunk_size}.")
        check_precision(self.precision)
        if self.precision != "float32" and type(self).meta_gradient is not MAML.meta_gradient:
            raise ValueError(
                f"{type(self).__name__} computes its own meta-gradient, which runs in float32 "
                f"only: precision={self.precision!r} applies to MAML.meta_gradient. Use "
                "precision='float32'."
            )
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {self.channels_last!r}.")
        if self.channels_last:
            if not hasattr(self.model, "channels_last"):
                raise ValueError(
                    f"channels_last=True lays out convolution activations, but "
                    f"{type(self.model).__name__} has no channels_last option (Conv4 has): "
                    "leave channels_last=False for this model."
                )
            self.model = replace(self.model, channels_last=True)
        self._compiled: Callable | None = None

    # --- what the variants (ANIL, Meta-SGD) change -------------------------------------------
    @property
    def adapt_names(self) -> tuple[str, ...] | None:
        """The parameters the inner loop adapts; None means all of them."""
        return None

    def init_meta_params(self, generator: torch.Generator | None = None) -> Params:
        """The meta-parameters the outer loop learns: here, the initialisation θ."""
        return self.model.init(generator)

    def split(self, meta_params: Params) -> tuple[Params, InnerLR]:
        """Meta-parameters -> (model parameters θ, inner learning rate α)."""
        return meta_params, self.inner_lr

    # --- one task ------------------------------------------------------------------------------
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
        """θ'_i: the inner loop (eq. 1) on one task's support set."""
        params, inner_lr = self.split(meta_params)

        def support_loss(p: Params) -> Tensor:
            return self.loss_fn(self.model.forward(p, support_x), support_y)

        return adapt(
            support_loss,
            params,
            inner_lr=inner_lr,
            inner_steps=self.inner_steps if inner_steps is None else inner_steps,
            first_order=self.first_order if first_order is None else first_order,
            adapt_names=self.adapt_names,
            gradient=gradient,
            checkpoint=self.checkpoint_inner and gradient == "autograd",
        )

    def task_objective(
        self,
        meta_params: Params,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        gradient: str = "autograd",
    ) -> tuple[Tensor, Tensor]:
        """L^query_i(f_θ'_i) as a function of the meta-parameters, and the query accuracy."""
        adapted = self.adapt(meta_params, support_x, support_y, gradient=gradient)
        prediction = self.model.forward(adapted, query_x, context=support_x)
        return self.loss_fn(prediction, query_y), accuracy(prediction, query_y).detach()

    # --- a batch of tasks ----------------------------------------------------------------------
    def meta_gradient(
        self, meta_params: Params, episode: Episode, *, sync: bool = True
    ) -> tuple[Params, Metrics | TensorMetrics]:
        """∇ of the mean post-adaptation query loss, and metrics before and after adaptation.

        With ``sync=False`` the metrics stay 0-d tensors on the episode's device, so the call
        never waits for the device (:func:`metalearn_edu.training.meta_train` reads them in
        batches); by default they are floats.
        """
        check_episode(self.model, episode)
        execution = self.execution
        if execution == "auto":
            execution = choose_execution(self.model, episode.support_x.device)
            if self.checkpoint_inner:
                execution = "loop"
        with precision_context(self.precision, episode.support_x.device.type):
            if execution == "compiled":
                grads, metrics = maml_compiled(self, meta_params, episode)
            else:
                compute = {"loop": maml_loop, "functional": maml_functional, "vmap": maml_vmap}
                grads, losses, accuracies = compute[execution](self, meta_params, episode)
                metrics = all_metrics(self, meta_params, episode, losses, accuracies)
        return grads, metrics if not sync else read_metrics(metrics)


def maml_loop(
    algorithm: MAML, meta_params: Params, episode: Episode
) -> tuple[Params, Tensor, Tensor]:
    """(a) A loop over tasks with ``torch.autograd.grad``; each task's graph is freed in turn."""
    leaves = {n: p.detach().requires_grad_() for n, p in meta_params.items()}
    grads = {n: torch.zeros_like(p) for n, p in leaves.items()}
    losses, accuracies = [], []
    with torch.enable_grad():
        for i in range(episode.num_tasks):
            loss, acc = algorithm.task_objective(
                leaves,
                episode.support_x[i],
                episode.support_y[i],
                episode.query_x[i],
                episode.query_y[i],
            )
            task_grads = torch.autograd.grad(loss, list(leaves.values()), materialize_grads=True)
            for name, g in zip(leaves, task_grads, strict=True):
                grads[name] += g / episode.num_tasks
            losses.append(loss.detach())
            accuracies.append(acc)
    return grads, torch.stack(losses), torch.stack(accuracies)


def _task_grad(algorithm: MAML) -> Callable:
    """θ, one task's tensors -> (∇_θ L^query(f_θ'), (loss, accuracy)), built with ``torch.func``."""

    def objective(meta_params: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
        loss, acc = algorithm.task_objective(meta_params, sx, sy, qx, qy, gradient="func")
        return loss, (loss.detach(), acc)

    return torch.func.grad(objective, has_aux=True)


def _vmapped_task_grad(algorithm: MAML) -> Callable:
    """The per-task gradient vmapped over tasks, ``vmap_chunk_size`` tasks at a time."""
    return torch.func.vmap(
        _task_grad(algorithm), in_dims=(None, 0, 0, 0, 0), chunk_size=algorithm.vmap_chunk_size
    )


def maml_functional(
    algorithm: MAML, meta_params: Params, episode: Episode
) -> tuple[Params, Tensor, Tensor]:
    """(b) The same loop over tasks, each gradient from ``torch.func.grad``."""
    task_grad = _task_grad(algorithm)
    params = {n: p.detach() for n, p in meta_params.items()}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    losses, accuracies = [], []
    for i in range(episode.num_tasks):
        g, (loss, acc) = task_grad(
            params,
            episode.support_x[i],
            episode.support_y[i],
            episode.query_x[i],
            episode.query_y[i],
        )
        for name in grads:
            grads[name] += g[name] / episode.num_tasks
        losses.append(loss)
        accuracies.append(acc)
    return grads, torch.stack(losses), torch.stack(accuracies)


def maml_vmap(
    algorithm: MAML, meta_params: Params, episode: Episode
) -> tuple[Params, Tensor, Tensor]:
    """(c) (b)'s per-task gradient, ``torch.func.vmap``-ed over the task dimension."""
    task_grads = _vmapped_task_grad(algorithm)
    params = {n: p.detach() for n, p in meta_params.items()}
    g, (losses, accuracies) = task_grads(
        params, episode.support_x, episode.support_y, episode.query_x, episode.query_y
    )
    return {n: v.mean(dim=0) for n, v in g.items()}, losses, accuracies


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that use CUDA graphs


def meta_gradient_step(algorithm: MAML) -> Callable:
    """θ, a batch of tasks' tensors -> (the meta-gradient, all metrics as 0-d tensors): (c) with
    the mean over tasks and the metrics in the same function, for ``torch.compile`` to make one
    graph of (one CPU thread: a sinusoid meta-iteration, meta-batch 25, in 0.32 ms, against 0.52 ms
    with the mean and the metrics run eagerly after the compiled gradient)."""
    task_grads = _vmapped_task_grad(algorithm)

    def step(params: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
        g, (losses, accuracies) = task_grads(params, sx, sy, qx, qy)
        metrics = all_metrics(algorithm, params, Episode(sx, sy, qx, qy), losses, accuracies)
        return {n: v.mean(dim=0) for n, v in g.items()}, metrics

    return step


def maml_compiled(
    algorithm: MAML, meta_params: Params, episode: Episode
) -> tuple[Params, TensorMetrics]:
    """(d) :func:`meta_gradient_step` under ``torch.compile``, compiled on the first call and kept
    on the algorithm."""
    if algorithm._compiled is None:
        algorithm._compiled = torch.compile(
            meta_gradient_step(algorithm), mode=algorithm.compile_mode, fullgraph=True
        )
    params = {n: p.detach() for n, p in meta_params.items()}
    with reference_only():  # the compiler fuses the PyTorch update itself: no Triton kernels
        grads, metrics = algorithm._compiled(
            params, episode.support_x, episode.support_y, episode.query_x, episode.query_y
        )
    if algorithm.compile_mode in CUDA_GRAPH_MODES:
        # a CUDA graph's outputs live in its own memory, which its next replay overwrites
        grads = {n: g.clone() for n, g in grads.items()}
        metrics = {k: v.clone() for k, v in metrics.items()}
    return grads, metrics


def all_metrics(
    algorithm: MAML, meta_params: Params, episode: Episode, losses: Tensor, accuracies: Tensor
) -> TensorMetrics:
    """:func:`query_metrics` of the unadapted model, then the adapted models' mean query loss and
    accuracy (``losses`` and ``accuracies``: one per task)."""
    metrics = query_metrics(algorithm, meta_params, episode)
    metrics["post_loss"] = losses.mean()
    metrics["post_accuracy"] = accuracies.mean()
    return metrics


@torch.no_grad()
def query_metrics(algorithm: MAML, meta_params: Params, episode: Episode) -> TensorMetrics:
    """Mean query loss and accuracy of the *unadapted* model (the "pre-adaptation" curve)."""
    params, _ = algorithm.split(meta_params)

    def task_metrics(qx: Tensor, qy: Tensor, sx: Tensor) -> tuple[Tensor, Tensor]:
        prediction = algorithm.model.forward(params, qx, context=sx)
        return algorithm.loss_fn(prediction, qy), accuracy(prediction, qy)

    losses, accuracies = torch.func.vmap(task_metrics)(
        episode.query_x, episode.query_y, episode.support_x
    )
    return {"pre_loss": losses.mean(), "pre_accuracy": accuracies.mean()}
