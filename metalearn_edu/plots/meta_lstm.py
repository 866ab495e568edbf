"""Figures of the Meta-LSTM (Ravi & Larochelle 2017): its gates read as a learned learning-rate
schedule and a learned decay (eq. 2, θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t), per learner tensor and
step, and the learner's support loss along the inner loop.

Every function returns a ``matplotlib.figure.Figure`` built with the object API (no pyplot state,
no ``plt.show()``); display it with :func:`metalearn_edu.display.show` or save it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.meta_lstm.algorithm import MetaLSTMTrace

Schedule = Mapping[str, Mapping[str, Tensor]]  # {tensor name: {"forget": [T], "input": [T]}}


def _names(schedule: Schedule, names: Sequence[str] | None) -> list[str]:
    chosen = list(schedule) if names is None else list(names)
    missing = [n for n in chosen if n not in schedule]
    if missing or not chosen:
        raise ValueError(
            f"names {missing or chosen} are not in the schedule, whose tensors are "
            f"{list(schedule)}."
        )
    return chosen


def _steps(schedule: Schedule, names: Sequence[str]) -> int:
    lengths = {len(schedule[n][g]) for n in names for g in ("forget", "input")}
    if len(lengths) != 1:
        raise ValueError(f"every tensor needs the same number of steps, got {sorted(lengths)}.")
    return lengths.pop()


def draw_gate_schedule(
    schedule: Schedule,
    names: Sequence[str] | None = None,
    initial: Schedule | None = None,
) -> Figure:
    """The mean input gate i_t (the learned learning rate, log scale) and the mean shrinkage
    1 − f_t per step (the learned decay: 0 keeps θ, log scale) of each learner tensor in ``names``
    (default: all), against the step t = 1 .. T.

    ``schedule`` is :func:`~metalearn_edu.gate_schedule.gate_schedule`'s first result;
    ``initial``, the same for the untrained meta-learner, is drawn dashed in grey.
    """
    chosen = _names(schedule, names)
    steps = np.arange(1, _steps(schedule, chosen) + 1)
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(chosen)))
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    panels = (
        ("input", "input gate $i_t$ (learning rate)", lambda v: v),
        ("forget", "$1 - f_t$ (shrinkage of θ per step)", lambda v: 1.0 - v),
    )
    for ax, (gate, label, transform) in zip(axes, panels, strict=True):
        if initial is not None:
            for k, name in enumerate(chosen):
                values = transform(initial[name][gate].detach().double().cpu().numpy())
                ax.plot(
                    steps,
                    np.clip(values, 1e-12, None),
                    color="tab:gray",
                    ls="--",
                    lw=1,
                    label="fresh (SGD start)" if k == 0 else None,
                )
        for name, color in zip(chosen, colors, strict=True):
            values = transform(schedule[name][gate].detach().double().cpu().numpy())
            ax.plot(steps, np.clip(values, 1e-12, None), "-o", ms=3, color=color, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("inner step t")
        ax.set_ylabel(label)
        ax.set_xticks(steps)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("learned learning rate, mean per tensor")
    axes[1].set_title("learned decay, mean per tensor")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def _tensor_slices(learner: Params) -> dict[str, slice]:
    slices, start = {}, 0
    for name, p in learner.items():
        slices[name] = slice(start, start + p.numel())
        start += p.numel()
    return slices


def draw_gate_distribution(
    trace: MetaLSTMTrace, learner: Params, step: int, names: Sequence[str] | None = None
) -> Figure:
    """How the gates of one task's inner loop spread over the coordinates of each learner tensor
    at ``step`` (1 .. T): histograms of log10 i_t and log10 (1 − f_t), one row per tensor.

    ``trace`` comes from :meth:`~metalearn_edu.meta_lstm.MetaLSTM.adapt_with_trace` with the
    learner's parameters ``learner`` (for the tensors' names and sizes).
    """
    if not 1 <= step <= len(trace.input):
        raise ValueError(f"step must lie in 1 .. {len(trace.input)}, got {step}.")
    slices = _tensor_slices(learner)
    total = sum(p.numel() for p in learner.values())
    if trace.input[0].numel() != total:
        raise ValueError(
            f"the trace's gates have {trace.input[0].numel()} coordinates but the learner has "
            f"{total}."
        )
    chosen = list(learner) if names is None else list(names)
    missing = [n for n in chosen if n not in slices]
    if missing or not chosen:
        raise ValueError(f"names {missing or chosen} are not learner tensors: {list(learner)}.")
    tiny = 1e-12
    logs = {
        "input": torch.stack(trace.input).double().clamp_min(tiny).log10(),
        "forget": (1.0 - torch.stack(trace.forget).double()).clamp_min(tiny).log10(),
    }
    edges = {
        gate: np.linspace(float(v.min()), float(v.max()) + 1e-9, 41) for gate, v in logs.items()
    }
    fig = Figure(figsize=(9, 0.9 * len(chosen) + 1.2))
    axes = fig.subplots(len(chosen), 2, squeeze=False, sharex="col")
    for row, name in enumerate(chosen):
        for col, gate in enumerate(("input", "forget")):
            ax = axes[row, col]
            values = logs[gate][step - 1, slices[name]].cpu().numpy()
            ax.hist(values, bins=edges[gate], color="tab:blue" if col == 0 else "tab:orange")
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(
                    f"{name}\n({len(values)})", rotation=0, ha="right", va="center", fontsize=8
                )
    axes[-1, 0].set_xlabel("log10 $i_t$ (learning rate)")
    axes[-1, 1].set_xlabel("log10 $(1 - f_t)$ (shrinkage)")
    axes[0, 0].set_title(f"input gate at step {step}, over each tensor's coordinates", fontsize=9)
    axes[0, 1].set_title(f"forget gate at step {step}", fontsize=9)
    fig.tight_layout()
    return fig


def draw_support_loss(curves: Mapping[str, Tensor]) -> Figure:
    """The learner's support loss L_t at θ_{t−1} against the step t (mean over tasks, with a band
    from the 10th to the 90th percentile), one curve per labelled ``[tasks, T]`` tensor."""
    if not curves:
        raise ValueError("draw_support_loss needs at least one curve.")
    fig = Figure(figsize=(5.8, 3.6))
    ax = fig.add_subplot()
    colors = colormaps["tab10"].colors
    for (label, losses), color in zip(curves.items(), colors, strict=False):
        if losses.dim() != 2 or losses.shape[1] < 1:
            raise ValueError(f"curve {label!r} must be [tasks, steps], got {tuple(losses.shape)}.")
        values = losses.detach().double().cpu()
        steps = np.arange(1, values.shape[1] + 1)
        low, high = torch.quantile(values, torch.tensor([0.1, 0.9], dtype=values.dtype), dim=0)
        ax.fill_between(steps, low.numpy(), high.numpy(), color=color, alpha=0.2)
        ax.plot(steps, values.mean(0).numpy(), "-o", ms=3, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("inner step t")
    ax.set_ylabel("support loss $L_t$ at $θ_{t-1}$")
    ax.set_title("the learner's training loss along the inner loop")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig
