"""Figures of what meta-learning costs: the angle between first- and second-order
meta-gradients during training, and time and memory per meta-iteration against the number of
inner steps. Every function returns a ``matplotlib.figure.Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def draw_gradient_angle(
    iterations: Sequence[int], angles: Sequence[float], title: str | None = None
) -> Figure:
    """The angle (degrees) between MAML's meta-gradient and its first-order approximation."""
    if len(iterations) != len(angles) or not angles:
        raise ValueError("iterations and angles must be non-empty and of the same length.")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    ax.plot(list(iterations), list(angles), "o-", ms=3)
    ax.set_xlabel("meta-iteration (second-order MAML training)")
    ax.set_ylabel("angle (degrees)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "angle between first- and second-order meta-gradients")
    ax.grid(alpha=0.3)
    return fig


def draw_cost_vs_steps(
    steps: Sequence[int],
    seconds: Mapping[str, Sequence[float]],
    memory_bytes: Mapping[str, Sequence[float]],
) -> Figure:
    """Two panels against the number of inner steps: milliseconds and autograd-graph memory
    (KiB) per meta-iteration, one line per algorithm."""
    fig = Figure(figsize=(10, 3.4))
    time_ax, memory_ax = fig.subplots(1, 2)
    for i, name in enumerate(seconds):
        time_ax.plot(list(steps), [1e3 * s for s in seconds[name]], "o-", color=f"C{i}", label=name)
    for i, name in enumerate(memory_bytes):
        memory_ax.plot(
            list(steps), [b / 1024 for b in memory_bytes[name]], "o-", color=f"C{i}", label=name
        )
    time_ax.set_ylabel("ms per meta-iteration")
    memory_ax.set_ylabel("peak autograd-graph memory (KiB)")
    for ax in (time_ax, memory_ax):
        ax.set_xlabel("inner steps")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
