"""Figures of class-disjoint splits: which characters of each Omniglot alphabet are meta-train,
meta-validation or meta-test under a splitting convention (:mod:`metalearn_edu.data.splits`).

Every function returns a ``matplotlib.figure.Figure`` (object API, no ``plt.show()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from metalearn_edu.data.splits import SPLITS, split_characters

if TYPE_CHECKING:
    from metalearn_edu.data.omniglot import Omniglot

SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def split_counts(
    characters: Sequence[str], background: Sequence[bool], convention: str = "maml"
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Alphabets (sorted) and, per split, how many of each alphabet's characters it holds."""
    parts = split_characters(characters, background, convention)
    alphabet_of = [name.split("/")[0] for name in characters]
    alphabets = sorted(set(alphabet_of))
    row = {a: i for i, a in enumerate(alphabets)}
    counts = {s: np.zeros(len(alphabets), dtype=int) for s in SPLITS}
    for split, ids in parts.items():
        for i in ids:
            counts[split][row[alphabet_of[i]]] += 1
    return alphabets, counts


def draw_class_splits(data: Omniglot, conventions: Sequence[str] = ("maml", "lake")) -> Figure:
    """One panel per convention: a stacked bar per alphabet, its characters coloured by split.

    Every character is in exactly one split (class-disjoint); the panels show whether the split
    also holds out whole alphabets (``"lake"``) or mixes them (``"maml"``).
    """
    if not conventions:
        raise ValueError("conventions must name at least one splitting convention.")
    background = data.background.tolist()
    fig = Figure(figsize=(4.2 * len(conventions) + 1.8, 8.5))
    axes = fig.subplots(1, len(conventions), sharey=True, squeeze=False)[0]
    for ax, convention in zip(axes, conventions, strict=True):
        alphabets, counts = split_counts(data.characters, background, convention)
        y = np.arange(len(alphabets))
        left = np.zeros(len(alphabets))
        for split in SPLITS:
            total = int(counts[split].sum())
            ax.barh(
                y,
                counts[split],
                left=left,
                color=SPLIT_COLORS[split],
                label=f"{split} ({total})",
                height=0.8,
            )
            left += counts[split]
        ax.set_title(f'convention "{convention}"', fontsize=10)
        ax.set_xlabel("characters")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks(y)
        ax.set_yticklabels([a.replace("_", " ") for a in alphabets], fontsize=6)
    axes[0].invert_yaxis()  # shared y axis: first alphabet at the top
    fig.suptitle("Class-disjoint splits of the 1623 Omniglot characters", fontsize=11)
    fig.tight_layout()
    return fig
