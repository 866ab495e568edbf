"""Split figures: counts per alphabet add up, the figure renders, bad input is refused."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.data import Omniglot
from metalearn_edu.plots.splits import draw_class_splits, split_counts


def tiny_omniglot():
    """5 background alphabets x 300 characters, 2 evaluation alphabets x 50: enough for "maml"."""
    names, background = [], []
    for a in range(7):
        n = 300 if a < 5 else 50
        names += [f"Alpha{a}/character{c + 1:02d}" for c in range(n)]
        background += [a < 5] * n
    images = torch.zeros(len(names), 20, 28, 28, dtype=torch.uint8)
    return Omniglot(images, tuple(names), torch.tensor(background))


@pytest.mark.parametrize("convention", ["maml", "lake"])
def test_split_counts_cover_every_character_once(convention):
    data = tiny_omniglot()
    alphabets, counts = split_counts(data.characters, data.background.tolist(), convention)
    assert alphabets == [f"Alpha{a}" for a in range(7)]
    total = sum(c for c in counts.values())
    assert total.tolist() == [300] * 5 + [50] * 2
    if convention == "lake":  # whole alphabets held out: the evaluation ones are all test
        assert counts["test"].tolist() == [0] * 5 + [50] * 2


def test_draw_class_splits_renders_one_panel_per_convention():
    fig = draw_class_splits(tiny_omniglot())
    fig.canvas.draw()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ['convention "maml"', 'convention "lake"']
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["train (1100)", "val (100)", "test (400)"]
    assert plt.get_fignums() == []


def test_draw_class_splits_needs_a_convention():
    with pytest.raises(ValueError, match="at least one"):
        draw_class_splits(tiny_omniglot(), conventions=())
