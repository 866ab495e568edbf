"""Figures for "what MAML learns": MAML, ANIL (Raghu et al. 2020) and Meta-SGD (Li et al. 2017)
side by side.

- :func:`draw_method_curves`: each method's post-adaptation query accuracy during meta-training;
- :func:`draw_layer_similarity`: per layer, the linear CKA between a task's representations before
  and after the inner loop (:func:`metalearn_edu.representations.layer_similarity`), one bar per
  method, as Raghu et al. draw the CCA similarity of MAML's layers;
- :func:`draw_learned_lrs`: the distribution of Meta-SGD's learned inner learning rates α (its
  θ' = θ − α ∘ ∇L), one box per parameter tensor, grouped by layer.

Every function returns a ``matplotlib.figure.Figure`` built with the object API (no pyplot state,
no ``plt.show()``); display it with :func:`metalearn_edu.display.show`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from metalearn_edu.evaluation import mean_and_ci95
from metalearn_edu.plots.fewshot import _moving_average

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def draw_method_curves(
    histories: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    window: int = 50,
    chance: float | None = None,
) -> Figure:
    """Post-adaptation query accuracy of the training tasks (moving average over ``window``
    meta-iterations) for each method; ``histories`` maps a label to a
    :attr:`metalearn_edu.training.TrainState.history`."""
    if not histories:
        raise ValueError("draw_method_curves needs at least one history.")
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.add_subplot()
    for (label, history), color in zip(histories.items(), _COLORS, strict=False):
        train = history["train"]
        if not train["iteration"]:
            raise ValueError(f"the history of {label!r} has no training iterations to draw.")
        iterations = np.asarray(train["iteration"], dtype=float) + 1
        smooth = _moving_average(train["post_accuracy"], window)
        ax.plot(iterations[len(iterations) - len(smooth) :], smooth, color=color, label=label)
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":", label=f"chance ({chance:.0%})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("query accuracy after adaptation")
    ax.set_title(f"training tasks (moving average over {window} iterations)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def draw_layer_similarity(
    similarity: Mapping[str, Tensor], layers: Sequence[str], steps: int = 1
) -> Figure:
    """Mean linear CKA (± 95% CI over tasks) of each layer before vs after ``steps`` inner steps.

    ``similarity`` maps a method's label to the ``[tasks, max_steps, layers]`` tensor of
    :func:`metalearn_edu.representations.layer_similarity`; ``layers`` names its last axis.
    """
    if not similarity:
        raise ValueError("draw_layer_similarity needs at least one method's similarities.")
    for label, values in similarity.items():
        if values.dim() != 3 or values.shape[2] != len(layers):
            raise ValueError(
                f"{label!r}: expected [tasks, max_steps, {len(layers)} layers], "
                f"got {tuple(values.shape)}."
            )
        if not 1 <= steps <= values.shape[1]:
            raise ValueError(
                f"{label!r} has similarities after 1 to {values.shape[1]} steps, not {steps}."
            )
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.add_subplot()
    positions = np.arange(len(layers))
    width = 0.8 / len(similarity)
    for i, ((label, values), color) in enumerate(zip(similarity.items(), _COLORS, strict=False)):
        stats = [mean_and_ci95(values[:, steps - 1, j]) for j in range(len(layers))]
        ax.bar(
            positions + (i - (len(similarity) - 1) / 2) * width,
            [m for m, _ in stats],
            width,
            yerr=[c for _, c in stats],
            capsize=2,
            color=color,
            label=label,
        )
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xticks(positions, list(layers))
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("linear CKA, before vs after")
    n_tasks = next(iter(similarity.values())).shape[0]
    plural = "s" if steps > 1 else ""
    ax.set_title(f"how much each layer changes: {steps} inner step{plural}, {n_tasks} test tasks")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    return fig


def draw_learned_lrs(lrs: Mapping[str, Tensor], initial: float | None = None) -> Figure:
    """Box plots of Meta-SGD's learned learning rates α, one per parameter tensor, coloured by
    layer (the name before the first dot), with the initial value as a dashed line.

    ``lrs`` maps parameter names to their α (the second value of ``MetaSGD.split``).
    """
    if not lrs:
        raise ValueError("draw_learned_lrs needs at least one parameter's learning rates.")
    names = list(lrs)
    layers = list(dict.fromkeys(name.split(".")[0] for name in names))
    fig = Figure(figsize=(max(6.5, 0.45 * len(names) + 1.5), 3.8))
    ax = fig.add_subplot()
    data = [lrs[n].detach().double().flatten().cpu().numpy() for n in names]
    boxes = ax.boxplot(
        data,
        positions=np.arange(len(names)),
        widths=0.6,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": "black"},
    )
    for name, box in zip(names, boxes["boxes"], strict=True):
        box.set_facecolor(_COLORS[layers.index(name.split(".")[0]) % len(_COLORS)])
        box.set_alpha(0.6)
    means = [d.mean() for d in data]
    ax.plot(np.arange(len(names)), means, "k.", label="mean")
    if initial is not None:
        ax.axhline(initial, color="tab:gray", ls="--", lw=1, label=f"initial α = {initial:g}")
    ax.set_xticks(np.arange(len(names)), [n.split(".", 1)[-1] for n in names], rotation=60)
    ax.tick_params(axis="x", labelsize=7)
    for i, layer in enumerate(layers):
        where = [j for j, n in enumerate(names) if n.split(".")[0] == layer]
        ax.text(
            np.mean(where),
            1.01,
            layer,
            transform=ax.get_xaxis_transform(),
            ha="center",
            fontsize=8,
            color=_COLORS[i % len(_COLORS)],
        )
    ax.set_ylabel("learned inner learning rate α")
    ax.set_title("Meta-SGD's learned learning rates, per parameter tensor", pad=18)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="y")
    return fig
