"""Figures of MAML at work: its two training curves, fine-tuning curves against the number of
steps, sinusoid fits after 0, 1, …, k steps (MAML Fig. 2), and the inner and outer loop drawn on
the loss surfaces of 2-parameter linear regression tasks.

Every function returns a ``matplotlib.figure.Figure`` (object API, no ``plt.show()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.finetune import adapted_sequence
from metalearn_edu.inner_loop import Params
from metalearn_edu.models.base import FunctionalModel
from metalearn_edu.tasks.linear import linear_loss
from metalearn_edu.tasks.sinusoid import SinusoidTasks


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def draw_training_curves(
    history: Mapping[str, Sequence[float]], window: int = 100, title: str = "meta-training"
) -> Figure:
    """The query loss before (``pre_loss``) and after (``post_loss``) adaptation per iteration,
    each a moving average over ``window`` iterations; the gap is what the inner loop buys."""
    if not history.get("pre_loss"):
        raise ValueError("history has no iterations to draw (empty 'pre_loss').")
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    for key, label, color in (
        ("pre_loss", "before adaptation (θ)", "tab:gray"),
        ("post_loss", "after adaptation (θ′)", "tab:blue"),
    ):
        smooth = _smooth(history[key], window)
        start = len(history[key]) - len(smooth)
        ax.plot(np.arange(len(smooth)) + start, smooth, color=color, label=label)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"query loss (mean of {min(window, len(history['pre_loss']))})")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def draw_step_curves(
    curves: Mapping[str, Sequence[float]],
    reference: Mapping[str, Mapping[int, float]] | None = None,
    title: str = "fine-tuning on new tasks",
    ylabel: str = "query MSE",
) -> Figure:
    """Loss against the number of inner steps (0, 1, …) for each method (lines), with published
    values (``reference[name][steps]``) as open markers in the same colour."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(range(len(values)), list(values), "o-", ms=3, color=color, label=f"{name} (ours)")
        if reference and name in reference:
            steps = sorted(reference[name])
            ax.plot(
                steps,
                [reference[name][s] for s in steps],
                "s",
                mfc="none",
                ms=8,
                color=color,
                label=f"{name} (paper)",
            )
    ax.set_xlabel("inner gradient steps at test time")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def draw_sinusoid_fits(
    x: Tensor,
    true_y: Tensor,
    support_x: Tensor,
    support_y: Tensor,
    fits: Mapping[str, Mapping[int, Tensor]],
) -> Figure:
    """One panel per method: the true curve, the K support points and the fitted curve after
    each number of steps in ``fits[method]`` (``{steps: predictions at x}``), as in MAML Fig. 2."""
    if not fits:
        raise ValueError("fits is empty: give at least one method.")
    fig = Figure(figsize=(4.2 * len(fits), 3.4))
    axes = fig.subplots(1, len(fits), sharey=True, squeeze=False)[0]
    xs = x.reshape(-1).numpy()
    for ax, (name, by_steps) in zip(axes, fits.items(), strict=True):
        ax.plot(xs, true_y.reshape(-1).numpy(), color="tab:red", lw=2, label="ground truth")
        shades = np.linspace(0.75, 0.0, max(2, len(by_steps)))
        for shade, (steps, y) in zip(shades, sorted(by_steps.items()), strict=False):
            style = "--" if steps == 0 else "-"
            label = "before (0 steps)" if steps == 0 else f"after {steps} step{'s' * (steps > 1)}"
            ax.plot(xs, y.reshape(-1).numpy(), style, color=str(shade), lw=1.5, label=label)
        ax.scatter(
            support_x.reshape(-1).numpy(),
            support_y.reshape(-1).numpy(),
            marker="^",
            s=40,
            color="tab:purple",
            zorder=3,
            label=f"K = {support_x.numel()} support points",
        )
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("y")
    return fig


def draw_sinusoid_adaptation(
    model: FunctionalModel,
    initializations: Mapping[str, tuple[Params, float]],
    amplitude: float,
    phase: float,
    shots: int,
    steps: int | Sequence[int],
    seed: int = 0,
    support_range: tuple[float, float] = (-5.0, 5.0),
) -> Figure:
    """Adapt each initialisation ``{name: (θ, inner_lr)}`` to the task ``A sin(x − φ)`` from
    ``shots`` points drawn (with ``seed``) in ``support_range``, and draw the fits after 0 and
    ``steps`` steps (or after each count in a sequence ``steps``). The notebook's widget."""
    counts = sorted({0, int(steps)} if isinstance(steps, int) else {int(s) for s in steps})
    tasks = SinusoidTasks(support_size=shots, query_size=1)
    episode = tasks.episode(
        torch.tensor([amplitude]),
        torch.tensor([phase]),
        torch.Generator().manual_seed(seed),
        support_range=support_range,
    )
    x = torch.linspace(-5, 5, 200).reshape(1, -1, 1)
    fits: dict[str, dict[int, Tensor]] = {}
    for name, (params, inner_lr) in initializations.items():
        sequence = adapted_sequence(
            model,
            params,
            episode.support_x,
            episode.support_y,
            inner_lr=inner_lr,
            steps=max(counts),
        )
        with torch.no_grad():
            fits[name] = {
                k: model.forward({n: p[0] for n, p in sequence[k].items()}, x[0]) for k in counts
            }
    true_y = SinusoidTasks.function(x, torch.tensor([amplitude]), torch.tensor([phase]))
    fig = draw_sinusoid_fits(x, true_y, episode.support_x, episode.support_y, fits)
    fig.suptitle(f"A = {amplitude:.2f}, φ = {phase:.2f}, K = {shots}", fontsize=10)
    return fig


@dataclass
class LinearView:
    """One panel of :func:`draw_linear_maml`: the initialisation θ = (w, b), each task's
    inner-loop path from it (``paths [T, steps + 1, 2]``) and the meta-gradient at θ."""

    title: str
    theta: Tensor
    paths: Tensor
    meta_gradient: Tensor


def draw_linear_maml(
    support_x: Tensor,
    support_y: Tensor,
    views: Sequence[LinearView],
    extent: tuple[float, float, float, float] | None = None,
    arrow_length: float = 1.5,
) -> Figure:
    """The two loops on 2-parameter linear regression: each task's support-loss contours over
    (w, b) in its own colour (its minimum marked ×), the inner-loop path of each task from the
    initialisation θ (MAML eq. 1, repeated), and the outer step's direction −∇_θ Σ L^query(θ′_i)
    as a black arrow at θ. Arrows share one scale across the views: the longest meta-gradient
    is drawn ``arrow_length`` long, so a small one after meta-training looks small. One panel
    per view."""
    if not views:
        raise ValueError("views is empty: give at least one LinearView.")
    points = torch.cat([v.paths.reshape(-1, 2) for v in views]).double()
    if extent is None:
        low, high = points.min(0).values - 0.8, points.max(0).values + 0.8
        extent = (low[0].item(), high[0].item(), low[1].item(), high[1].item())
    w = torch.linspace(extent[0], extent[1], 120, dtype=torch.float64)
    b = torch.linspace(extent[2], extent[3], 120, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(w, b, indexing="xy"), dim=-1)
    longest = max(v.meta_gradient.detach().double().norm().item() for v in views)
    scale = arrow_length / longest if longest > 0 else 0.0
    fig = Figure(figsize=(4.6 * len(views), 4.2))
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for ax, view in zip(axes, views, strict=True):
        for t in range(support_x.shape[0]):
            color = f"C{t % 10}"
            surface = linear_loss(grid, support_x[t].double(), support_y[t].double())
            levels = np.quantile(surface.numpy(), [0.01, 0.05, 0.15, 0.35])
            ax.contour(
                w.numpy(),
                b.numpy(),
                surface.numpy(),
                levels=levels,
                colors=color,
                linewidths=0.8,
                alpha=0.6,
            )
            flat = int(surface.argmin())
            ax.plot(grid.reshape(-1, 2)[flat, 0], grid.reshape(-1, 2)[flat, 1], "x", color=color)
            path = view.paths[t].detach().double().numpy()
            ax.plot(path[:, 0], path[:, 1], "o-", color=color, ms=3, lw=1.5)
        theta = view.theta.detach().double().reshape(2)
        ax.plot(theta[0], theta[1], "ko", ms=7, label="initialisation θ")
        d = -view.meta_gradient.detach().double().reshape(2) * scale
        if d.norm().item() > 0:
            ax.annotate(
                "",
                xy=(theta[0] + d[0], theta[1] + d[1]),
                xytext=(theta[0], theta[1]),
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 2},
            )
        ax.plot([], [], "k-", lw=2, label="−meta-gradient (outer step)")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_xlabel("w (slope)")
        ax.set_ylabel("b (intercept)")
        ax.set_title(view.title)
        ax.legend(fontsize=7, loc="lower right")
    return fig
