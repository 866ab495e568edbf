"""Figures of notebook 07, learned optimizers (Andrychowicz et al. 2016): the log/sign
preprocessing, loss curves of several optimizers (median and quartiles over problems), the update
as a function of the gradient, and optimizer paths over a 2-D quadratic's contours. Every function
returns a ``matplotlib.figure.Figure``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer
from metalearn_edu.learned_optimizers.paths import quadratic_paths
from metalearn_edu.tasks.quadratic import quadratic_loss

#: One colour per optimizer in every figure of the notebook.
COLORS = {"SGD": "C0", "Adam": "C1", "LSTM": "C2", "LSTM (untrained)": "C7"}


def _color(name: str, index: int) -> str:
    return COLORS.get(name, f"C{index + 3}")


def _symlog_gradient_axis(ax: Axes, x: Tensor) -> None:
    """A symmetric log x-axis over the magnitudes in ``x``, ticks every second decade."""
    nonzero = x.abs()[x != 0]
    if not nonzero.numel():
        return
    low = math.floor(math.log10(nonzero.min().item()))
    high = math.ceil(math.log10(nonzero.max().item()))
    decades = [10.0**k for k in range(high, low - 1, -2)]
    ax.set_xscale("symlog", linthresh=10.0**low)
    ax.set_xticks([-d for d in decades] + [0.0] + decades[::-1])
    ax.tick_params(axis="x", labelsize=7)


def draw_preprocessing(x: Tensor, features: Mapping[str, Tensor]) -> Figure:
    """The two features of the log/sign map (App. A of the paper) against the input ``x``, one
    line per setting in ``features`` (label -> ``[len(x), 2]``), on a symmetric log axis."""
    if not features:
        raise ValueError("features must hold at least one setting to draw.")
    x = x.detach().reshape(-1).double()
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2)
    for i, (label, f) in enumerate(features.items()):
        if f.shape != (x.numel(), 2):
            raise ValueError(
                f"features[{label!r}] has shape {tuple(f.shape)}, not ({x.numel()}, 2)."
            )
        for k, ax in enumerate(axes):
            ax.plot(x.numpy(), f[:, k].detach().double().numpy(), color=f"C{i}", label=label)
    for ax, title in zip(
        axes, ("first feature: log|x| / p, or −1", "second feature: sgn x, or e^p x"), strict=True
    ):
        _symlog_gradient_axis(ax, x)
        ax.set_xlabel("input x (a gradient entry; symmetric log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def draw_gradient_magnitudes(grads: Mapping[str, Tensor], title: str | None = None) -> Figure:
    """Histogram of log10 |∇| of every nonzero gradient entry, one histogram per group (e.g. per
    layer of a network): how many orders of magnitude an optimizer's inputs span."""
    logs = {}
    for name, g in grads.items():
        flat = g.detach().reshape(-1).abs().double()
        flat = flat[flat > 0]
        if flat.numel():
            logs[name] = flat.log10().numpy()
    if not logs:
        raise ValueError("grads must hold at least one nonzero entry.")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    low = min(v.min() for v in logs.values())
    high = max(v.max() for v in logs.values())
    bins = torch.linspace(math.floor(low), math.ceil(high), 41).numpy()
    for i, (name, values) in enumerate(logs.items()):
        ax.hist(values, bins=bins, alpha=0.6, color=f"C{i}", label=name)
    ax.set_xlabel("log10 |gradient entry|")
    ax.set_ylabel("entries")
    ax.set_title(title or "gradient magnitudes", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def draw_loss_curves(
    panels: Mapping[str, Mapping[str, Tensor]],
    *,
    log: bool = True,
    ylabel: str = "loss",
    columns: int = 3,
) -> Figure:
    """One panel per entry of ``panels`` (title -> {optimizer name -> losses ``[T + 1, B]``}):
    the median over the ``B`` problems against the step, with the interquartile range shaded."""
    if not panels or any(not curves for curves in panels.values()):
        raise ValueError("panels must hold at least one panel, each with at least one curve.")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax, (title, curves) in zip(axes, panels.items(), strict=False):
        for i, (name, losses) in enumerate(curves.items()):
            losses = losses.detach().double()
            if losses.dim() != 2:
                raise ValueError(f"{title}/{name}: losses must be [steps + 1, problems].")
            steps = torch.arange(losses.shape[0]).numpy()
            low, median, high = torch.quantile(
                losses, torch.tensor([0.25, 0.5, 0.75], dtype=losses.dtype), dim=1
            ).numpy()
            color = _color(name, i)
            ax.plot(steps, median, color=color, label=name)
            ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("optimizee step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def draw_update_functions(grads: Tensor, updates: Mapping[str, Tensor]) -> Figure:
    """The first update g_1 against the gradient ∇_1, one line per optimizer (``updates``: name ->
    tensor shaped like ``grads``). Left: g_1 against ∇_1 on a symmetric log gradient axis (the sign
    and shape of the rule); right: the step length |g_1| against |∇_1| for positive gradients on
    log-log axes (SGD is a line of slope 1, a sign-based step a flat line)."""
    if not updates:
        raise ValueError("updates must hold at least one optimizer.")
    x = grads.detach().reshape(-1).double()
    order = torch.argsort(x)
    positive = x > 0
    fig = Figure(figsize=(10, 3.6))
    shape_ax, size_ax = fig.subplots(1, 2)
    for i, (name, u) in enumerate(updates.items()):
        if u.shape != grads.shape:
            raise ValueError(f"updates[{name!r}] has shape {tuple(u.shape)}, not the gradients'.")
        y = u.detach().reshape(-1).double()
        color = _color(name, i)
        shape_ax.plot(x[order].numpy(), y[order].numpy(), color=color, label=name)
        size_ax.plot(
            x[positive].numpy(), y[positive].abs().numpy(), ".-", ms=2, color=color, label=name
        )
    _symlog_gradient_axis(shape_ax, x)
    shape_ax.axhline(0, color="k", lw=0.5)
    shape_ax.set_xlabel("gradient ∇ (symmetric log scale)")
    shape_ax.set_ylabel("first update g₁ = θ₁ − θ₀")
    size_ax.set_xscale("log")
    size_ax.set_yscale("log")
    size_ax.set_xlabel("gradient ∇ > 0")
    size_ax.set_ylabel("step length |g₁|")
    for ax in (shape_ax, size_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def draw_quadratic_paths(
    W: Tensor, y: Tensor, paths: Mapping[str, Tensor], title: str | None = None
) -> Figure:
    """Paths ``[T + 1, 2]`` of several optimizers over the contours of f(θ) = ‖Wθ − y‖² (2-D),
    with the minimum marked."""
    if W.shape != (2, 2) or y.shape != (2,):
        raise ValueError(
            f"need a 2-D problem: W [2, 2] and y [2], got {tuple(W.shape)}, {tuple(y.shape)}."
        )
    if not paths:
        raise ValueError("paths must hold at least one path.")
    W, y = W.detach().double(), y.detach().double()
    minimum = torch.linalg.lstsq(W, y.unsqueeze(-1)).solution.squeeze(-1)
    points = torch.cat([p.detach().double() for p in paths.values()] + [minimum[None]])
    finite = points[torch.isfinite(points).all(-1)]
    low, high = finite.min(0).values, finite.max(0).values
    pad = 0.15 * (high - low).clamp_min(1e-3)
    grid = [
        torch.linspace(lo - pd, hi + pd, 120, dtype=torch.float64)
        for lo, hi, pd in zip(low, high, pad, strict=True)
    ]
    X, Y = torch.meshgrid(*grid, indexing="xy")
    thetas = torch.stack([X, Y], dim=-1)
    Z = quadratic_loss(thetas, W, y)
    fig = Figure(figsize=(5.4, 4.6))
    ax = fig.add_subplot()
    levels = torch.quantile(
        Z.reshape(-1), torch.linspace(0.0, 1.0, 16, dtype=torch.float64)
    ).unique()
    ax.contour(
        X.numpy(), Y.numpy(), Z.numpy(), levels=levels.numpy(), colors="0.75", linewidths=0.7
    )
    for i, (name, path) in enumerate(paths.items()):
        p = path.detach().double().numpy()
        ax.plot(p[:, 0], p[:, 1], "o-", ms=2.5, lw=1, color=_color(name, i), label=name)
    ax.plot(*paths[next(iter(paths))][0].detach().double().numpy(), "ks", ms=6, label="start θ₀")
    ax.plot(*minimum.numpy(), "k*", ms=12, label="minimum")
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_title(title or "paths on a 2-D quadratic ‖Wθ − y‖²", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def draw_2d_problem(
    optimizer: LSTMOptimizer,
    params: Params,
    learning_rates: Mapping[str, float],
    seed: int,
    steps: int,
) -> Figure:
    """The widget's figure: SGD, Adam and the learned optimizer for ``steps`` steps on the random
    2-D quadratic number ``seed`` (see :func:`~metalearn_edu.learned_optimizers.paths.
    quadratic_paths`)."""
    W, y, paths = quadratic_paths(optimizer, params, learning_rates, seed=seed, steps=steps)
    finals = ", ".join(
        f"{name} {quadratic_loss(path[-1].double(), W.double(), y.double()).item():.2g}"
        for name, path in paths.items()
    )
    return draw_quadratic_paths(
        W, y, paths, title=f"problem {seed}, {steps} steps; final loss: {finals}"
    )
