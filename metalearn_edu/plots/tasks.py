"""Figures of tasks: an episode's support and query sets, a family of sinusoids, Omniglot samples.

Every function returns a ``matplotlib.figure.Figure`` built with the object API (no pyplot state,
no ``plt.show()``); display it with :func:`metalearn_edu.display.show` or save it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import SinusoidTasks

if TYPE_CHECKING:
    from metalearn_edu.data.omniglot import Omniglot


def _image_grid(fig: Figure, spec, images: Tensor, labels: Tensor, title: str, ways: int) -> None:
    """Rows = classes 0..ways-1, columns = that class's examples in order."""
    per_class = [images[labels == c] for c in range(ways)]
    cols = max(1, max(len(p) for p in per_class))
    grid = spec.subgridspec(ways, cols, wspace=0.05, hspace=0.05)
    for c, imgs in enumerate(per_class):
        for j in range(cols):
            ax = fig.add_subplot(grid[c, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j].squeeze(0).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.set_axis_off()
            if j == 0:
                ax.set_ylabel(str(c), rotation=0, labelpad=8, va="center")
            if c == 0 and j == 0:
                ax.set_title(title, loc="left", fontsize=10)


def draw_episode(episode: Episode, task: int = 0, max_queries: int = 5) -> Figure:
    """Draw one task of an episode.

    Image tasks (inputs ``[T, n, C, H, W]``): a support grid and a query grid, one row per label
    (the label is written at the left), at most ``max_queries`` query images per class.
    Regression tasks (inputs ``[T, n, 1]``): support and query points in one scatter plot.
    """
    one = episode.task(task)
    sx, sy, qx, qy = one.support_x[0], one.support_y[0], one.query_x[0], one.query_y[0]
    if sx.dim() == 4:
        ways = int(torch.cat([sy, qy]).max()) + 1
        q_keep = torch.cat([torch.nonzero(qy == c).flatten()[:max_queries] for c in range(ways)])
        qx, qy = qx[q_keep], qy[q_keep]
        k = max(int((sy == c).sum()) for c in range(ways))
        q = max(int((qy == c).sum()) for c in range(ways))
        fig = Figure(figsize=(1.0 + 0.8 * (k + q), 0.4 + 0.8 * ways))
        spec = fig.add_gridspec(1, 2, width_ratios=[k, q], wspace=0.15)
        _image_grid(fig, spec[0], sx, sy, f"support ({len(sy)})", ways)
        _image_grid(fig, spec[1], qx, qy, f"query ({len(one.query_y[0])})", ways)
        fig.suptitle(f"task {task}: {ways}-way {k}-shot", fontsize=11)
        return fig
    if sx.dim() == 2 and sx.shape[-1] == 1:
        fig = Figure(figsize=(5, 3.2))
        ax = fig.add_subplot()
        ax.scatter(
            qx[:, 0].cpu().numpy(),
            qy[:, 0].cpu().numpy(),
            s=12,
            c="tab:gray",
            label=f"query ({len(qx)})",
        )
        ax.scatter(
            sx[:, 0].cpu().numpy(),
            sy[:, 0].cpu().numpy(),
            s=30,
            c="tab:red",
            label=f"support ({len(sx)})",
        )
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"task {task}")
        ax.legend(loc="best", fontsize=8)
        return fig
    raise ValueError(
        f"draw_episode draws image tasks [T, n, C, H, W] or 1-d regression tasks [T, n, 1], got "
        f"support_x of shape {tuple(episode.support_x.shape)}."
    )


def draw_sinusoid_family(
    tasks: SinusoidTasks | None = None,
    num_tasks: int = 5,
    seed: int = 0,
    amplitude: Tensor | Sequence[float] | None = None,
    phase: Tensor | Sequence[float] | None = None,
    show_support: bool = True,
) -> Figure:
    """True curves ``A sin(x - phi)`` of a few sinusoid tasks (MAML §5.1), with their K points.

    Tasks are drawn from ``tasks`` with ``seed`` unless ``amplitude`` and ``phase`` are given.
    """
    tasks = tasks if tasks is not None else SinusoidTasks()
    g = torch.Generator().manual_seed(seed)
    if amplitude is None or phase is None:
        amplitude, phase = tasks.sample_parameters(num_tasks, g)
    amplitude = torch.as_tensor(amplitude, dtype=torch.float32).reshape(-1)
    phase = torch.as_tensor(phase, dtype=torch.float32).reshape(-1)
    episode = tasks.episode(amplitude, phase, g)
    low, high = tasks.input_range
    x = torch.linspace(low, high, 200).expand(len(amplitude), -1)
    y = SinusoidTasks.function(x, amplitude, phase)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(amplitude))]
    for i, color in enumerate(colors):
        label = f"A={amplitude[i]:.2f}, φ={phase[i]:.2f}"
        ax.plot(x[i].numpy(), y[i].numpy(), color=color, lw=1.5, label=label)
        if show_support:
            ax.scatter(
                episode.support_x[i, :, 0].numpy(),
                episode.support_y[i, :, 0].numpy(),
                color=color,
                s=14,
            )
    ax.set_xlabel("x")
    ax.set_ylabel("y = A sin(x − φ)")
    ax.set_title(f"{len(amplitude)} sinusoid tasks (K = {tasks.support_size} points shown)")
    if len(amplitude) <= 8:
        ax.legend(fontsize=7, loc="upper right")
    return fig


def draw_omniglot_alphabets(
    data: Omniglot,
    alphabets: Sequence[str] | int = 4,
    characters_per_alphabet: int = 8,
    drawing: int = 0,
) -> Figure:
    """One row per alphabet, its first characters (drawing number ``drawing``) along the row.

    ``data`` is an :class:`metalearn_edu.data.omniglot.Omniglot`; ``alphabets`` is a list of
    names or how many alphabets to show (spread over the sorted list of all 50).
    """
    names = data.alphabet_names()
    if isinstance(alphabets, int):
        if alphabets < 1:
            raise ValueError(f"alphabets must be at least 1, got {alphabets}.")
        step = max(1, len(names) // alphabets)
        alphabets = names[::step][:alphabets]
    unknown = [a for a in alphabets if a not in names]
    if unknown:
        raise ValueError(f"unknown alphabets {unknown}; known: {names}.")
    rows, cols = len(alphabets), characters_per_alphabet
    fig = Figure(figsize=(0.8 * cols + 2.2, 0.85 * rows))
    grid = fig.add_gridspec(rows, cols, wspace=0.05, hspace=0.1, left=0.25, right=0.98)
    owner = data.alphabets
    for r, alphabet in enumerate(alphabets):
        ids = [i for i, a in enumerate(owner) if a == alphabet][:cols]
        for j in range(cols):
            ax = fig.add_subplot(grid[r, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(ids):
                ax.imshow(data.images[ids[j], drawing].numpy(), cmap="gray_r", vmin=0, vmax=255)
            else:
                ax.set_axis_off()
            if j == 0:
                ax.set_ylabel(
                    alphabet.replace("_", " "), rotation=0, ha="right", va="center", fontsize=8
                )
    return fig
