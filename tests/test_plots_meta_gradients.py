"""Figures of notebook 02: each returns a Figure that renders, opens no pyplot window and refuses
bad input with a message."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.plots.meta_gradients import (
    draw_lr_hypergradient_descent,
    draw_post_update_loss,
    draw_unrolled_graph,
)


def rendered(fig: Figure) -> Figure:
    fig.canvas.draw()
    assert plt.get_fignums() == []
    return fig


def test_post_update_loss_draws_curves_minima_and_tangents():
    theta = torch.linspace(-2, 2, 41)
    curves = {"before": theta**2, "after": (theta - 0.5) ** 2 / 2}
    fig = rendered(
        draw_post_update_loss(
            theta,
            curves,
            tangents={"exact": (1.0, 0.125, 0.5), "fo": (1.0, 0.125, 1.0)},
            ylim=(0.0, 3.0),
        )
    )
    (ax,) = fig.axes
    assert ax.get_ylim() == (0.0, 3.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["before", "after", "exact", "fo"]
    minima = [line for line in ax.lines if line.get_marker() == "o"]
    assert np.allclose([float(m.get_xdata()[0]) for m in minima], [0.0, 0.5], atol=1e-6)


@pytest.mark.parametrize(
    ("theta", "curves", "message"),
    [
        (np.zeros(1), {"a": np.zeros(1)}, "1-d grid of at least 2"),
        (np.zeros(3), {}, "at least one curve"),
        (np.zeros(3), {"a": np.zeros(4)}, "curve 'a' has shape"),
    ],
)
def test_post_update_loss_rejects_bad_input(theta, curves, message):
    with pytest.raises(ValueError, match=message):
        draw_post_update_loss(theta, curves)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_unrolled_graph_has_one_gradient_node_per_step(steps, first_order):
    fig = rendered(draw_unrolled_graph(steps, first_order))
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("g_") for t in texts) == steps
    assert texts.count("cut") == (steps if first_order else 0)
    assert texts.count("∇²L_s") == (0 if first_order else steps)
    assert ("first order" in ax.get_title()) == first_order


@pytest.mark.parametrize("steps", [0, 7, 2.0])
def test_unrolled_graph_rejects_bad_step_counts(steps):
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 6"):
        draw_unrolled_graph(steps)


def test_lr_hypergradient_descent_figure():
    grid = np.linspace(0.0, 1.0, 51)
    fig = rendered(draw_lr_hypergradient_descent(grid, (grid - 0.4) ** 2, [0.05, 0.2, 0.35, 0.39]))
    left, right = fig.axes
    assert len(left.collections) == 1  # the iterates
    assert left.get_yscale() == "linear"  # a zero loss on the grid: no log scale
    assert len(right.lines[0].get_xdata()) == 4
    assert "0.40" in right.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="must be equal 1-d"):
        draw_lr_hypergradient_descent(grid, grid[:-1], [0.1])
    with pytest.raises(ValueError, match="non-empty"):
        draw_lr_hypergradient_descent(grid, grid, [])
    positive = draw_lr_hypergradient_descent(grid, 1 + (grid - 0.4) ** 2, [0.1])
    assert positive.axes[0].get_yscale() == "log"
