"""Figures for making meta-learning fast (notebook 09): measured throughputs beside the floors a
roofline argument gives, and CPU timings of the executions. Memory against inner steps uses
:func:`metalearn_edu.plots.cost.draw_cost_vs_steps`. Every function returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure


def draw_time_per_iteration(
    measured_it_per_s: Mapping[str, float], floors_s: Mapping[str, float], title: str
) -> Figure:
    """Horizontal bars of milliseconds per meta-iteration (log scale): measured throughputs
    (converted from iterations per second) in blue, floors in grey."""
    if not measured_it_per_s and not floors_s:
        raise ValueError("nothing to draw: give measured throughputs or floors.")
    if any(v <= 0 for v in (*measured_it_per_s.values(), *floors_s.values())):
        raise ValueError("throughputs and floors must be positive.")
    labels = [*measured_it_per_s, *(f"floor: {name}" for name in floors_s)]
    ms = [1e3 / v for v in measured_it_per_s.values()] + [1e3 * v for v in floors_s.values()]
    colors = ["C0"] * len(measured_it_per_s) + ["0.6"] * len(floors_s)
    fig = Figure(figsize=(7.5, 0.35 * len(labels) + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(len(labels)), ms, color=colors)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per meta-iteration (log scale)")
    for i, value in enumerate(ms):
        ax.text(value, i, f" {value:.3g}", va="center", fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return fig


def draw_execution_times(milliseconds: Mapping[str, float], title: str) -> Figure:
    """Bars of milliseconds per meta-iteration, one per execution, labelled with the speed-up
    over the first one."""
    if not milliseconds or any(v <= 0 for v in milliseconds.values()):
        raise ValueError("give at least one positive time.")
    names, values = list(milliseconds), list(milliseconds.values())
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
    for i, value in enumerate(values):
        ax.text(i, value, f"{value:.2f} ms\n×{values[0] / value:.1f}", ha="center", va="bottom")
    ax.set_ylabel("ms per meta-iteration")
    ax.set_ylim(0, 1.3 * max(values))
    ax.set_title(title)
    return fig
