"""The meta-training loop (MAML Algorithm 2, and the same loop for every algorithm here):

    for each iteration:
        sample a batch of tasks T_i ~ p(T)                      (meta_batch_size of them)
        g = algorithm.meta_gradient(θ, tasks)                   (inner loops inside)
        θ ← OuterOptimizer(θ, g)                                (Adam, lr meta_lr, as MAML)

It records, per iteration, the query loss and accuracy before and after adaptation (the two
curves whose gap is what meta-learning buys), validates every ``validate_every`` iterations on
fixed held-out tasks, saves checkpoints, and stops with an error naming the iteration and the
loss if a loss becomes NaN or infinite.

On a GPU the loop never waits for the device inside an iteration: the metrics stay on the device
and are read back every ``sync_every`` iterations (default 100 on an accelerator, 1 on the CPU),
so the host samples and launches the next iterations while the device computes; reading a number
back every iteration would make the host wait for each step to finish. A non-finite loss or
gradient is still found and named by its iteration at the next read-back, before any checkpoint
is written (on the CPU: before its update is applied).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalearn_edu.algorithms.maml import MAML
from metalearn_edu.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from metalearn_edu.evaluation import evaluate
from metalearn_edu.inner_loop import Params
from metalearn_edu.tasks.episode import TaskDistribution

# configuration keys a resumed run may change: how far to go, how to report, how to compute the
# same arithmetic; every other key (the algorithm, its settings, the data, the precision) must match
RESUMABLE_CHANGES = frozenset(
    {
        "iterations",
        "eval_tasks",
        "validation_tasks",
        "validate_every",
        "omniglot_root",
        "execution",
        "compile_mode",
        "vmap_chunk_size",
        "sync_every",
        "channels_last",
        "conv",
    }
)
TRAIN_COLUMNS = ("iteration", "pre_loss", "post_loss", "pre_accuracy", "post_accuracy")
VALIDATION_COLUMNS = ("iteration", "loss", "loss_ci95", "accuracy", "accuracy_ci95")
_LOSS_NAMES = {"pre_loss": "pre-adaptation query loss", "post_loss": "post-adaptation query loss"}


@dataclass
class TrainState:
    """Everything a run needs to continue: its checkpoint is this, as plain data."""

    meta_params: Params
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    iteration: int = 0
    train_time_s: float = 0.0  # wall time spent in meta_train, summed over resumed pieces
    history: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {
            "train": {c: [] for c in TRAIN_COLUMNS},
            "validation": {c: [] for c in VALIDATION_COLUMNS},
        }
    )

    def to_checkpoint(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "config": config,
            "iteration": self.iteration,
            "train_time_s": self.train_time_s,
            "meta_params": {n: p.detach().cpu() for n, p in self.meta_params.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }


def make_optimizer(meta_params: Params, name: str, meta_lr: float) -> torch.optim.Optimizer:
    """The outer optimiser: ``"adam"`` (MAML) or ``"sgd"`` (Reptile's θ ← θ + ε(φ − θ))."""
    if not (meta_lr > 0 and math.isfinite(meta_lr)):
        raise ValueError(f"meta_lr must be a positive finite number, got {meta_lr!r}.")
    if name == "adam":  # on a GPU, one fused kernel updates all parameters
        fused = all(p.is_cuda for p in meta_params.values()) or None
        return torch.optim.Adam(meta_params.values(), lr=meta_lr, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(meta_params.values(), lr=meta_lr)
    raise ValueError(f"outer_optimizer must be 'adam' or 'sgd', got {name!r}.")


def init_state(
    algorithm: MAML,
    *,
    seed: int = 0,
    meta_lr: float = 1e-3,
    outer_optimizer: str = "adam",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TrainState:
    """Fresh meta-parameters (from ``seed``), optimiser and task generator (from ``seed + 1``)."""
    params = algorithm.init_meta_params(torch.Generator().manual_seed(seed))
    params = {n: p.to(device, dtype).requires_grad_() for n, p in params.items()}
    optimizer = make_optimizer(params, outer_optimizer, meta_lr)
    return TrainState(params, optimizer, torch.Generator().manual_seed(seed + 1))


def resume_state(state: TrainState, path: str | os.PathLike) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into ``state`` (same algorithm and model); return it."""
    saved = load_checkpoint(path)
    check_compatible(saved["meta_params"], state.meta_params, source=str(path))
    with torch.no_grad():
        for name, p in state.meta_params.items():
            p.copy_(saved["meta_params"][name])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    state.iteration = int(saved["iteration"])
    state.train_time_s = float(saved.get("train_time_s", 0.0))  # absent before 2026-11
    state.history = saved["history"]
    return saved


def _check_same_run(saved: dict[str, Any], config: dict[str, Any], path: Any) -> None:
    """A resumed run must continue the run it resumes: refuse changed settings, naming them."""
    if not saved or not config:
        return
    # keys a checkpoint does not have are not compared: it was written before they existed
    shared = (saved.keys() & config.keys()) - RESUMABLE_CHANGES
    changed = sorted(key for key in shared if saved[key] != config[key])
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {config[k]!r}" for k in changed)
        raise ValueError(
            f"the checkpoint {path} was trained with other settings ({details}); resume with the "
            "same settings, or start a new run with another --checkpoint."
        )


class _PendingMetrics:
    """Per-iteration metrics and gradient-finiteness flags, kept on the device until read."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, Tensor, Tensor]] = []

    def add(self, iteration: int, metrics: dict[str, Tensor], grads: Params) -> None:
        values = torch.stack([metrics[k].detach().to(torch.float64) for k in TRAIN_COLUMNS[1:]])
        finite = torch.stack([torch.isfinite(g).all() for g in grads.values()])
        self.rows.append((iteration, values, finite))

    def flush(self, train: dict[str, list[float]], grad_names: list[str]) -> dict[str, float]:
        """Read everything pending in one transfer, check it, append it to ``train``; return
        the last iteration's metrics."""
        values = torch.stack([v for _, v, _ in self.rows]).tolist()
        finite = torch.stack([f for _, _, f in self.rows]).tolist()
        for (iteration, _, _), row, flags in zip(self.rows, values, finite, strict=True):
            metrics = dict(zip(TRAIN_COLUMNS[1:], row, strict=True))
            bad = [n for n, ok in zip(grad_names, flags, strict=True) if not ok]
            _check_finite(iteration, metrics, bad)
            train["iteration"].append(iteration)
            for key in TRAIN_COLUMNS[1:]:
                train[key].append(metrics[key])
        self.rows.clear()
        return metrics


def _check_finite(iteration: int, metrics: dict[str, float], bad_grads: list[str]) -> None:
    for key, description in _LOSS_NAMES.items():
        if not math.isfinite(metrics[key]):
            raise FloatingPointError(
                f"meta-training stopped at iteration {iteration}: the {description} is "
                f"{metrics[key]} (try a smaller inner_lr or meta_lr)."
            )
    if bad_grads:
        raise FloatingPointError(
            f"meta-training stopped at iteration {iteration}: the meta-gradient of {bad_grads} "
            f"is not finite although the losses are."
        )


def meta_train(
    algorithm: MAML,
    tasks: TaskDistribution,
    iterations: int,
    *,
    meta_batch_size: int = 25,
    state: TrainState | None = None,
    seed: int = 0,
    meta_lr: float = 1e-3,
    outer_optimizer: str = "adam",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    validation_tasks: TaskDistribution | None = None,
    validate_every: int = 0,
    validation_size: int = 100,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    progress: bool = True,
    sync_every: int | None = None,
    time_limit_s: float | None = None,
) -> TrainState:
    """Meta-train until ``iterations`` meta-updates in total have been made.

    With ``resume=True`` and an existing ``checkpoint_path`` the run continues from it and ends
    exactly as an uninterrupted run would. Checkpoints are written every ``checkpoint_every``
    iterations (0: only at the end) when ``checkpoint_path`` is given. Metrics are read back
    from the device every ``sync_every`` iterations (None: 1 on the CPU, 100 elsewhere), and
    always before validating, checkpointing and returning.

    ``time_limit_s`` stops the run early, after the first iteration that ends past the limit,
    with a checkpoint (when ``checkpoint_path`` is given) to resume from: for machines lent for a
    few minutes at a time. ``state.iteration`` tells how far it got.
    """
    if iterations < 0 or meta_batch_size < 1:
        raise ValueError(
            f"iterations must be >= 0 and meta_batch_size >= 1, "
            f"got {iterations} and {meta_batch_size}."
        )
    if state is None:
        state = init_state(
            algorithm,
            seed=seed,
            meta_lr=meta_lr,
            outer_optimizer=outer_optimizer,
            device=device,
            dtype=dtype,
        )
    config = dict(config or {})
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        saved = resume_state(state, checkpoint_path)
        _check_same_run(saved.get("config") or {}, config, checkpoint_path)
    train, validation = state.history["train"], state.history["validation"]
    if sync_every is None:
        sync_every = 1 if torch.device(device).type == "cpu" else 100
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError(f"sync_every must be a positive integer, got {sync_every!r}.")
    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be positive (or None), got {time_limit_s!r}.")
    started = time.monotonic()
    deadline = math.inf if time_limit_s is None else started + time_limit_s
    time_before = state.train_time_s
    pending, grad_names = _PendingMetrics(), list(state.meta_params)

    # At most two redraws a second: a notebook front end (and nbval, which reads a cell's messages
    # only when it ends) must not be flooded with one message per iteration.
    bar = tqdm(
        total=iterations,
        initial=state.iteration,
        disable=not progress,
        desc="meta-training",
        mininterval=0.5,
    )
    while state.iteration < iterations:
        iteration = state.iteration
        episode = tasks.sample(meta_batch_size, generator=state.generator).to(device, dtype)
        grads, metrics = algorithm.meta_gradient(state.meta_params, episode, sync=False)
        pending.add(iteration, metrics, grads)
        done = iteration + 1  # meta-updates made once this one is applied
        last = done == iterations
        out_of_time = not last and time.monotonic() >= deadline
        validate = bool(
            validation_tasks is not None and validate_every and (done % validate_every == 0 or last)
        )
        save = checkpoint_path is not None and (
            last or out_of_time or bool(checkpoint_every and done % checkpoint_every == 0)
        )
        if len(pending.rows) >= sync_every or validate or save or last or out_of_time:
            read = pending.flush(train, grad_names)  # raises on a non-finite loss or gradient
            bar.set_postfix(
                pre=f"{read['pre_loss']:.3f}", post=f"{read['post_loss']:.3f}", refresh=False
            )
        for name, p in state.meta_params.items():
            p.grad = grads[name]
        state.optimizer.step()
        state.iteration += 1
        bar.update(1)

        if validate:
            result = evaluate(
                algorithm,
                state.meta_params,
                validation_tasks,
                num_tasks=validation_size,
                seed=seed + 2,
                device=device,
            )
            for key in VALIDATION_COLUMNS[1:]:
                validation[key].append(result[key])
            validation["iteration"].append(state.iteration)
            if not math.isfinite(result["loss"]):
                raise FloatingPointError(
                    f"meta-training stopped at iteration {iteration}: the validation query loss "
                    f"is {result['loss']}."
                )
        state.train_time_s = time_before + time.monotonic() - started
        if save:
            save_checkpoint(checkpoint_path, state.to_checkpoint(config))
        if out_of_time:
            break
    bar.close()
    return state
