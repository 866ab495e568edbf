"""Figures of differentiating through optimization (notebook 02): the post-update loss as a
function of the initialization, the unrolled inner loop drawn as a computation graph, and
hypergradient descent on the inner learning rate.

The inner step is MAML's eq. 1, ``θ_{k+1} = θ_k − α ∇L_s(θ_k)``; its derivative with respect to
``θ_k`` is ``I − α ∇²L_s(θ_k)``, the Hessian term that ``create_graph=True`` keeps and first-order
MAML drops. Every function returns a ``matplotlib.figure.Figure`` (object API, no ``plt.show()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

ArrayLike = Sequence[float] | np.ndarray


def _numpy(values: object) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(values, dtype=float)


def draw_post_update_loss(
    theta: ArrayLike,
    curves: Mapping[str, ArrayLike],
    tangents: Mapping[str, tuple[float, float, float]] | None = None,
    title: str = "Query loss after adaptation, as a function of the initialization",
    xlabel: str = "initialization θ",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Each curve is a loss over the grid ``theta``; its minimum is marked with a dot.

    ``tangents`` maps a label to ``(θ0, loss0, slope)``: a short line through ``(θ0, loss0)`` with
    that slope, e.g. the exact meta-gradient beside the first-order one. ``ylim`` zooms in.
    """
    x = _numpy(theta)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"theta must be a 1-d grid of at least 2 points, got shape {x.shape}.")
    if not curves:
        raise ValueError("curves must hold at least one curve.")
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    for i, (label, values) in enumerate(curves.items()):
        y = _numpy(values)
        if y.shape != x.shape:
            raise ValueError(f"curve {label!r} has shape {y.shape}, the grid has {x.shape}.")
        color = f"C{i % 10}"
        ax.plot(x, y, color=color, lw=1.8, label=label)
        best = int(np.nanargmin(y))
        ax.plot([x[best]], [y[best]], "o", color=color, ms=5)
    span = 0.2 * (x[-1] - x[0])
    styles = ["-", "--", ":", "-."]
    for j, (label, (t0, l0, slope)) in enumerate((tangents or {}).items()):
        xs = np.array([t0 - span, t0 + span])
        ax.plot(xs, l0 + slope * (xs - t0), styles[j % 4], color="black", lw=1.3, label=label)
    if tangents:
        t0, l0, _ = next(iter(tangents.values()))
        ax.plot([t0], [l0], "s", color="black", ms=5)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def _box(ax, xy: tuple[float, float], text: str, color: str = "black") -> None:
    ax.text(
        *xy,
        text,
        ha="center",
        va="center",
        fontsize=10,
        color=color,
        bbox={"boxstyle": "round,pad=0.35", "fc": "white", "ec": color, "lw": 1.2},
        zorder=3,
    )


def _arrow(
    ax,
    start,
    end,
    color="black",
    style="-",
    label: str | None = None,
    lw=1.3,
    offset=(0.0, 0.12),
    ha="center",
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=12,
            color=color,
            lw=lw,
            linestyle=style,
            shrinkA=16,
            shrinkB=16,
            zorder=2,
        )
    )
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx + offset[0], my + offset[1], label, ha=ha, va="bottom", fontsize=8, color=color)


def draw_unrolled_graph(steps: int = 2, first_order: bool = False) -> Figure:
    """The inner loop unrolled for ``steps`` steps: the graph the outer gradient flows back along.

    Nodes: ``θ_0 .. θ_K``, each inner gradient ``g_k = ∇L_s(θ_k)``, the learning rate ``α`` and the
    query loss. The edges ``θ_k → g_k`` carry the Hessian ``∇²L_s(θ_k)``: kept (red) with
    ``create_graph=True``, cut (grey, dotted) in first order, where ``g_k`` is a constant.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 6:
        raise ValueError(f"steps must be an integer from 1 to 6, got {steps!r}.")
    fig = Figure(figsize=(2.2 * steps + 3.2, 3.6))
    ax = fig.add_subplot()
    for k in range(steps + 1):
        _box(ax, (2 * k, 0), f"θ_{k}" if k else "θ_0 = θ")
    for k in range(steps):
        hessian = "grey" if first_order else "tab:red"
        _box(ax, (2 * k + 1, 1.1), f"g_{k} = ∇L_s(θ_{k})", color=hessian)
        _arrow(
            ax,
            (2 * k, 0),
            (2 * k + 1, 1.1),
            color=hessian,
            style=":" if first_order else "-",
            label="cut" if first_order else "∇²L_s",
            offset=(0.12, -0.25),
            ha="left",
        )
        _arrow(
            ax, (2 * k + 1, 1.1), (2 * k + 2, 0), label=f"−α g_{k}", offset=(0.1, 0.0), ha="left"
        )
        _arrow(ax, (2 * k, 0), (2 * k + 2, 0), label="I", offset=(0.0, 0.05))
        _arrow(ax, (steps, -1.0), (2 * k + 2, 0), color="tab:blue", lw=0.8)
    _box(ax, (steps, -1.0), "α (inner_lr)", color="tab:blue")
    _box(ax, (2 * steps + 1.4, 0), "L_q(θ_K)", color="tab:green")
    _arrow(ax, (2 * steps, 0), (2 * steps + 1.4, 0), color="tab:green")
    factor = "I" if first_order else "I − α ∇²L_s(θ_k)"
    ax.text(
        steps,
        -1.75,
        f"backward: dL_q/dθ = (∏ₖ dθ_(k+1)/dθ_k)ᵀ ∇L_q(θ_K),   dθ_(k+1)/dθ_k = {factor}",
        ha="center",
        fontsize=9,
    )
    mode = "first order (gradients detached)" if first_order else "second order (create_graph=True)"
    ax.set_title(f"{steps} inner step{'s' if steps > 1 else ''} unrolled: {mode}", fontsize=10)
    ax.set_xlim(-0.8, 2 * steps + 2.3)
    ax.set_ylim(-2.0, 1.6)
    ax.set_axis_off()
    return fig


def draw_lr_hypergradient_descent(
    lr_grid: ArrayLike,
    loss_grid: ArrayLike,
    lr_path: ArrayLike,
    loss_path: ArrayLike | None = None,
) -> Figure:
    """Left: the meta-loss as a function of the inner learning rate α, with the iterates of
    hypergradient descent on it; right: α over the meta-iterations."""
    grid, losses, path = _numpy(lr_grid), _numpy(loss_grid), _numpy(lr_path)
    if grid.shape != losses.shape or grid.ndim != 1:
        raise ValueError(f"lr_grid {grid.shape} and loss_grid {losses.shape} must be equal 1-d.")
    if path.ndim != 1 or len(path) < 1:
        raise ValueError("lr_path must be a non-empty 1-d sequence of learning rates.")
    fig = Figure(figsize=(9.5, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(grid, losses, color="C0", lw=1.8, label="mean query loss after adaptation")
    best = int(np.nanargmin(losses))
    left.plot([grid[best]], [losses[best]], "o", color="C0", ms=5)
    on_curve = np.interp(path, grid, losses) if loss_path is None else _numpy(loss_path)
    order = np.arange(len(path))
    left.scatter(
        path, on_curve, c=order, cmap="viridis", s=14, zorder=3, label="α iterates (dark: early)"
    )
    if np.all(losses > 0):
        left.set_yscale("log")
    left.set_xlabel("inner learning rate α")
    left.set_ylabel("meta-loss")
    left.set_title("The meta-loss over α", fontsize=10)
    left.legend(fontsize=8)
    right.plot(np.arange(len(path)), path, color="C1", lw=1.5)
    right.axhline(
        grid[best], color="C0", ls="--", lw=1, label=f"best α on the grid: {grid[best]:.2f}"
    )
    right.set_xlabel("meta-iteration")
    right.set_ylabel("α")
    right.set_title("Hypergradient descent on α", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig
