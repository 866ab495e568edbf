"""ANIL / Meta-SGD figures: each returns a Figure that renders, draws what its data says, and
rejects bad input; the similarity widget works at the extremes of its slider."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.plots.anil import draw_layer_similarity, draw_learned_lrs, draw_method_curves
from metalearn_edu.widgets import Slider, check_extremes

LAYERS = ("block0", "block1", "block2", "block3", "head")


def rendered(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # raises if anything in the figure is broken
    return fig


def history(n: int, level: float) -> dict:
    train = {
        "iteration": list(range(n)),
        "pre_loss": [1.6] * n,
        "post_loss": [1.0] * n,
        "pre_accuracy": [0.2] * n,
        "post_accuracy": [level] * n,
    }
    return {"train": train, "validation": {}}


def test_method_curves_one_line_per_method_at_its_level():
    fig = rendered(
        draw_method_curves({"MAML": history(30, 0.8), "ANIL": history(30, 0.6)}, 10, chance=0.2)
    )
    ax = fig.axes[0]
    lines = [line for line in ax.lines if line.get_label() in ("MAML", "ANIL")]
    assert [line.get_label() for line in lines] == ["MAML", "ANIL"]
    assert np.allclose(lines[0].get_ydata(), 0.8) and np.allclose(lines[1].get_ydata(), 0.6)
    assert len(lines[0].get_xdata()) == 30 - 10 + 1  # a full moving-average window each


def test_method_curves_reject_empty_input():
    with pytest.raises(ValueError, match="at least one history"):
        draw_method_curves({})
    with pytest.raises(ValueError, match="no training iterations"):
        draw_method_curves({"MAML": history(0, 0.5)})


def similarity(tasks: int = 6, steps: int = 3, head: float = 0.4) -> torch.Tensor:
    values = torch.full((tasks, steps, len(LAYERS)), 0.99, dtype=torch.float64)
    values[..., -1] = head
    return values


def test_layer_similarity_bars_show_the_means():
    data = {"MAML": similarity(head=0.4), "ANIL": similarity(head=0.7)}
    fig = rendered(draw_layer_similarity(data, LAYERS, steps=2))
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 2 * len(LAYERS)
    assert heights[len(LAYERS) - 1] == pytest.approx(0.4)  # MAML's head
    assert heights[-1] == pytest.approx(0.7)  # ANIL's head
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYERS)


def test_layer_similarity_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        draw_layer_similarity({}, LAYERS)
    with pytest.raises(ValueError, match="5 layers"):
        draw_layer_similarity({"MAML": similarity()[..., :3]}, LAYERS)
    with pytest.raises(ValueError, match="not 4"):
        draw_layer_similarity({"MAML": similarity(steps=3)}, LAYERS, steps=4)


def test_layer_similarity_widget_extremes():
    sliders = [Slider("steps", 1, 3, 1, 1)]
    tried = check_extremes(
        draw_layer_similarity, sliders, similarity={"MAML": similarity()}, layers=LAYERS
    )
    assert [t["steps"] for t in tried] == [1, 1, 3]


def test_learned_lrs_one_box_per_tensor_with_its_mean():
    g = torch.Generator().manual_seed(0)
    lrs = {
        "block0.conv.weight": 0.3 + 0.01 * torch.randn(8, 1, 3, 3, generator=g),
        "block0.conv.bias": torch.full((8,), 0.4),
        "head.weight": 0.5 + 0.05 * torch.randn(5, 8, generator=g),
        "head.bias": torch.full((5,), -0.1),
    }
    fig = rendered(draw_learned_lrs(lrs, initial=0.4))
    ax = fig.axes[0]
    means = next(line for line in ax.lines if line.get_label() == "mean")
    expected = [v.double().mean().item() for v in lrs.values()]
    assert np.allclose(means.get_ydata(), expected)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["conv.weight", "conv.bias", "weight", "bias"]
    assert {t.get_text() for t in ax.texts} == {"block0", "head"}
    assert any(line.get_label() == "initial α = 0.4" for line in ax.lines)


def test_learned_lrs_rejects_nothing_to_draw():
    with pytest.raises(ValueError, match="at least one"):
        draw_learned_lrs({})
