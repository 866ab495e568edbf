"""Figures of few-shot classification with MAML (Finn et al. 2017, §5.2): training curves before and
after adaptation, one task's predictions before and after the inner loop (eq. 1), the class
probabilities of a new image, and accuracy against the number of test-time inner steps.

Every function returns a ``matplotlib.figure.Figure`` built with the object API (no pyplot state,
no ``plt.show()``); display it with :func:`metalearn_edu.display.show` or save it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.evaluation import mean_and_ci95

_RIGHT, _WRONG = "tab:green", "tab:red"


def _moving_average(values: Sequence[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def draw_accuracy_curves(
    history: Mapping[str, Mapping[str, Sequence[float]]],
    window: int = 50,
    chance: float | None = None,
) -> Figure:
    """Meta-training query accuracy before and after adaptation (moving average over ``window``
    iterations), and the validation accuracy if the history has any.

    ``history`` is :attr:`metalearn_edu.training.TrainState.history`.
    """
    train = history["train"]
    if not train["iteration"]:
        raise ValueError("the history has no training iterations to draw.")
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.add_subplot()
    iterations = np.asarray(train["iteration"], dtype=float) + 1
    for key, label, color in (
        ("pre_accuracy", "before adaptation (θ)", "tab:gray"),
        ("post_accuracy", "after adaptation (θ'), training tasks", "tab:blue"),
    ):
        smooth = _moving_average(train[key], window)
        ax.plot(iterations[len(iterations) - len(smooth) :], smooth, color=color, label=label)
    validation = history.get("validation", {})
    if validation.get("iteration"):
        ax.errorbar(
            validation["iteration"],
            validation["accuracy"],
            yerr=validation["accuracy_ci95"],
            fmt="o",
            color="tab:orange",
            capsize=3,
            label="after adaptation, validation tasks",
        )
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":", label=f"chance ({chance:.0%})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("query accuracy")
    ax.set_title(f"meta-training (moving average over {min(window, len(iterations))} iterations)")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    return fig


def _image(ax, image: Tensor) -> None:
    ax.imshow(image.squeeze(0).detach().cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_predictions(
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
    before: Tensor,
    after: Tensor,
    max_queries: int = 10,
) -> Figure:
    """One task: its support set, then its queries twice, labelled with the class predicted before
    adaptation (by θ) and after it (by θ'); green when right, red when wrong.

    ``before`` and ``after`` are predicted labels or logits/probabilities ``[n, ways]`` for the
    queries; at most ``max_queries`` queries are drawn (spread over the classes).
    """
    predictions = []
    for p in (before, after):
        p = p.detach().cpu()
        predictions.append(p.argmax(dim=-1) if p.dim() == 2 else p)
    n = len(query_y)
    if any(len(p) != n for p in predictions):
        raise ValueError(
            f"before and after must predict the {n} queries, got {[len(p) for p in predictions]}."
        )
    if max_queries < 1:
        raise ValueError(f"max_queries must be at least 1, got {max_queries}.")
    labels = query_y.detach().cpu()
    per_class = [
        torch.nonzero(labels == c).flatten().tolist() for c in range(int(labels.max()) + 1)
    ]
    keep: list[int] = []
    rank = 0
    while len(keep) < min(n, max_queries):  # the first query of each class, then the second...
        for indices in per_class:
            if rank < len(indices) and len(keep) < max_queries:
                keep.append(indices[rank])
        rank += 1
    keep.sort(key=lambda q: (int(labels[q]), q))
    cols = max(len(support_y), len(keep))
    fig = Figure(figsize=(0.9 * cols + 1.4, 4.2))
    grid = fig.add_gridspec(3, cols, hspace=0.55, wspace=0.1, left=0.16)
    for j in range(cols):
        ax = fig.add_subplot(grid[0, j])
        if j < len(support_y):
            _image(ax, support_x[j])
            ax.set_title(f"class {int(support_y[j])}", fontsize=8)
        else:
            ax.set_axis_off()
        if j == 0:
            ax.set_ylabel("support", rotation=0, ha="right", va="center", fontsize=9)
    for row, (name, predicted) in enumerate(
        (("before\nadaptation", predictions[0]), ("after\nadaptation", predictions[1])), start=1
    ):
        correct = int((predicted == labels).sum())
        for j in range(cols):
            ax = fig.add_subplot(grid[row, j])
            if j >= len(keep):
                ax.set_axis_off()
                continue
            q = keep[j]
            _image(ax, query_x[q])
            right = bool(predicted[q] == labels[q])
            ax.set_title(
                f"true {int(labels[q])} → {int(predicted[q])}",
                fontsize=8,
                color=_RIGHT if right else _WRONG,
            )
            for spine in ax.spines.values():
                spine.set_edgecolor(_RIGHT if right else _WRONG)
                spine.set_linewidth(2)
            if j == 0:
                ax.set_ylabel(
                    f"{name}\n{correct}/{n} right", rotation=0, ha="right", va="center", fontsize=9
                )
    return fig


def draw_class_probabilities(
    support_x: Tensor, support_y: Tensor, image: Tensor, probabilities: Tensor
) -> Figure:
    """A new image, the support example of each class, and the adapted model's probability of each
    class for the image (a bar under each class's example)."""
    probabilities = probabilities.detach().cpu().reshape(-1)
    ways = len(probabilities)
    firsts = [int(torch.nonzero(support_y.cpu() == c).flatten()[0]) for c in range(ways)]
    fig = Figure(figsize=(1.1 * ways + 2.2, 3.2))
    grid = fig.add_gridspec(2, ways + 1, height_ratios=[1, 1.6], hspace=0.35, wspace=0.15)
    ax = fig.add_subplot(grid[0, 0])
    _image(ax, image)
    ax.set_title("new image", fontsize=9)
    for c, index in enumerate(firsts):
        ax = fig.add_subplot(grid[0, c + 1])
        _image(ax, support_x[index])
        ax.set_title(f"class {c}", fontsize=9)
    ax = fig.add_subplot(grid[1, 1:])
    best = int(probabilities.argmax())
    colors = ["tab:blue" if c == best else "tab:gray" for c in range(ways)]
    ax.bar(np.arange(ways), probabilities.numpy(), color=colors)
    ax.set_xticks(np.arange(ways), [f"class {c}" for c in range(ways)], fontsize=8)
    ax.set_xlim(-0.5, ways - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(
        f"adapted model: class {best} with probability {probabilities[best]:.2f}", fontsize=9
    )
    return fig


def draw_accuracy_by_steps(
    accuracies: Tensor, train_steps: int | None = None, marked: Sequence[int] = ()
) -> Figure:
    """Mean query accuracy (with its 95% confidence interval) against the number of test-time
    inner steps; ``accuracies`` is ``[tasks, steps + 1]`` from
    :func:`metalearn_edu.adaptation.accuracy_by_steps` (column k: after k steps)."""
    if accuracies.dim() != 2 or accuracies.shape[1] < 1:
        raise ValueError(f"accuracies must be [tasks, steps + 1], got {tuple(accuracies.shape)}.")
    steps = np.arange(accuracies.shape[1])
    stats = [mean_and_ci95(accuracies[:, k]) for k in steps]
    means = np.array([m for m, _ in stats])
    cis = np.array([c for _, c in stats])
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    ax.errorbar(steps, means, yerr=cis, fmt="-o", color="tab:blue", capsize=3, ms=4)
    for k in marked:
        if 0 <= k < len(steps):
            ax.annotate(
                f"{means[k]:.1%}",
                (k, means[k]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
            )
    if train_steps is not None:
        ax.axvline(train_steps, color="tab:gray", ls="--", lw=1, label="steps in meta-training")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(steps)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("test-time inner steps")
    ax.set_ylabel("query accuracy (mean ± 95% CI)")
    ax.set_title(f"{accuracies.shape[0]} test tasks")
    ax.grid(alpha=0.3)
    return fig
