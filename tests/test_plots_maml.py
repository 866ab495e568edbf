"""MAML figures: each returns a Figure with what it promises; the widget's plot works at the
extremes of its sliders."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.models import MLP
from metalearn_edu.plots.cost import draw_cost_vs_steps, draw_gradient_angle
from metalearn_edu.plots.maml import (
    LinearView,
    draw_linear_maml,
    draw_sinusoid_adaptation,
    draw_sinusoid_fits,
    draw_step_curves,
    draw_training_curves,
)
from metalearn_edu.tasks import LinearTasks
from metalearn_edu.widgets import Slider, check_extremes


def rendered(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    assert plt.get_fignums() == []
    return fig


def test_training_curves_draw_both_losses_smoothed():
    history = {"pre_loss": [3.0] * 50, "post_loss": [float(i) for i in range(50)]}
    (ax,) = rendered(draw_training_curves(history, window=10)).axes
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 41
    with pytest.raises(ValueError, match="no iterations"):
        draw_training_curves({"pre_loss": [], "post_loss": []})


def test_step_curves_with_paper_markers():
    fig = draw_step_curves(
        {"MAML": [3.0, 0.7, 0.5], "pretrained": [3.0, 2.5, 2.4]},
        reference={"MAML": {1: 0.67, 2: 0.5}},
    )
    (ax,) = rendered(fig).axes
    assert len(ax.lines) == 3  # two curves + one set of paper markers


def test_sinusoid_fits_one_panel_per_method():
    x = torch.linspace(-5, 5, 20)
    fits = {"A": {0: x * 0, 1: x, 10: x * 2}, "B": {0: x * 0}}
    fig = rendered(draw_sinusoid_fits(x, torch.sin(x), x[:3], torch.sin(x[:3]), fits))
    assert [ax.get_title() for ax in fig.axes] == ["A", "B"]
    assert len(fig.axes[0].lines) == 4  # truth + three step counts
    with pytest.raises(ValueError, match="empty"):
        draw_sinusoid_fits(x, x, x, x, {})


def test_sinusoid_adaptation_widget_at_its_extremes():
    model = MLP((1, 8, 1), init_scheme="xavier")
    params = model.init(torch.Generator().manual_seed(0))
    sliders = [
        Slider("amplitude", 0.1, 5.0, 0.1, 2.5),
        Slider("phase", 0.0, 3.1, 0.1, 1.0),
        Slider("shots", 1, 20, 1, 5),
        Slider("steps", 0, 10, 1, 10),
    ]
    settings = check_extremes(
        draw_sinusoid_adaptation, sliders, model=model, initializations={"m": (params, 0.01)}
    )
    assert len(settings) == 1 + 2**4
    fig = rendered(
        draw_sinusoid_adaptation(
            model, {"m": (params, 0.01)}, 1.0, 0.5, 5, (0, 1, 10), support_range=(-5, 0)
        )
    )
    assert len(fig.axes[0].lines) == 4
    xs = fig.axes[0].collections[0].get_offsets()[:, 0]
    assert (xs <= 0).all()  # support points only in the left half


def test_linear_maml_view_draws_contours_paths_and_arrow():
    tasks = LinearTasks(5, 5).sample(3, torch.Generator().manual_seed(0))
    paths = torch.cumsum(torch.full((3, 4, 2), 0.1), dim=1)
    views = [
        LinearView("before", torch.tensor([0.1, 0.1]), paths, torch.tensor([1.0, -1.0])),
        LinearView("after", torch.tensor([0.1, 0.1]), paths, torch.zeros(2)),
    ]
    fig = rendered(draw_linear_maml(tasks.support_x, tasks.support_y, views))
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    assert len(fig.axes[0].texts) == 1 and len(fig.axes[1].texts) == 0  # arrow only if nonzero
    with pytest.raises(ValueError, match="views"):
        draw_linear_maml(tasks.support_x, tasks.support_y, [])


def test_cost_figures():
    rendered(draw_gradient_angle([0, 10, 20], [5.0, 10.0, 8.0]))
    with pytest.raises(ValueError):
        draw_gradient_angle([0], [])
    fig = rendered(
        draw_cost_vs_steps(
            [1, 2], {"MAML": [0.01, 0.02], "FOMAML": [0.01, 0.01]}, {"MAML": [1e3, 2e3]}
        )
    )
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
