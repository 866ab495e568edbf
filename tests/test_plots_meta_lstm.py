"""Meta-LSTM figures: each returns a Figure that renders, draws what its data says, opens no window
and rejects bad input; the gate-distribution widget at its sliders' extremes."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.meta_lstm import MetaLSTM, gates_by_parameter
from metalearn_edu.models import MLP
from metalearn_edu.plots.meta_lstm import (
    draw_gate_distribution,
    draw_gate_schedule,
    draw_support_loss,
)
from metalearn_edu.widgets import Slider, check_extremes


def rendered(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # raises if anything in the figure is broken
    assert plt.get_fignums() == []  # built with the object API: no pyplot figure left open
    return fig


def traced(steps: int = 4):
    algorithm = MetaLSTM(MLP((2, 3, 2), "tanh", "xavier"), inner_steps=steps, hidden=3)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    _, trace = algorithm.adapt_with_trace(params, x, y)
    learner, _ = algorithm.split(params)
    return trace, learner


def test_gate_schedule_draws_one_line_per_tensor_with_the_gates_values():
    trace, learner = traced()
    schedule = gates_by_parameter(trace, learner)
    fig = rendered(draw_gate_schedule(schedule, names=["layer0.weight", "layer1.weight"]))
    rate, decay = fig.axes[0], fig.axes[1]
    assert len(rate.lines) == len(decay.lines) == 2
    assert rate.get_yscale() == decay.get_yscale() == "log"
    assert np.allclose(rate.lines[0].get_xdata(), [1, 2, 3, 4])
    expected_rate = schedule["layer0.weight"]["input"].double().numpy()
    expected_decay = 1 - schedule["layer1.weight"]["forget"].double().numpy()
    assert np.allclose(rate.lines[0].get_ydata(), expected_rate)
    assert np.allclose(decay.lines[1].get_ydata(), expected_decay)
    assert [t.get_text() for t in decay.get_legend().get_texts()] == [
        "layer0.weight",
        "layer1.weight",
    ]


def test_gate_schedule_draws_the_untrained_reference_dashed():
    trace, learner = traced()
    schedule = gates_by_parameter(trace, learner)
    later = {n: {g: v * 2 for g, v in d.items()} for n, d in schedule.items()}
    fig = rendered(draw_gate_schedule(later, initial=schedule))
    assert len(fig.axes[0].lines) == 2 * len(learner)  # every tensor, trained and untrained
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == len(learner)
    assert np.allclose(dashed[0].get_ydata(), schedule["layer0.weight"]["input"].numpy())


def test_gate_schedule_rejects_unknown_names_and_ragged_steps():
    trace, learner = traced()
    schedule = gates_by_parameter(trace, learner)
    with pytest.raises(ValueError, match="not in the schedule"):
        draw_gate_schedule(schedule, names=["block9.weight"])
    ragged = dict(schedule)
    ragged["layer1.bias"] = {"forget": torch.ones(2), "input": torch.ones(2)}
    with pytest.raises(ValueError, match="same number of steps"):
        draw_gate_schedule(ragged)


def test_gate_distribution_histograms_count_each_tensors_coordinates():
    trace, learner = traced()
    fig = rendered(draw_gate_distribution(trace, learner, step=2, names=["layer0.weight"]))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert sum(p.get_height() for p in ax.patches) == 6  # layer0.weight: 3 x 2
    heights = [p.get_height() for p in fig.axes[0].patches]
    lefts = [p.get_x() for p in fig.axes[0].patches]
    expected = np.log10(trace.input[1][:6].double().numpy())
    counts, _ = np.histogram(expected, bins=np.array([*lefts, lefts[-1] + 1e9]))
    assert heights == list(counts)


def test_gate_distribution_widget_at_its_extremes():
    trace, learner = traced(steps=5)
    settings = check_extremes(
        draw_gate_distribution, [Slider("step", 1, 5, 1, 5)], trace=trace, learner=learner
    )
    assert [s["step"] for s in settings] == [5, 1, 5]


def test_gate_distribution_rejects_bad_input():
    trace, learner = traced()
    with pytest.raises(ValueError, match=r"step must lie in 1 \.\. 4"):
        draw_gate_distribution(trace, learner, step=0)
    with pytest.raises(ValueError, match="gates have 17 coordinates but the learner has 18"):
        draw_gate_distribution(trace, {"w": torch.zeros(18)}, step=1)
    with pytest.raises(ValueError, match="not learner tensors"):
        draw_gate_distribution(trace, learner, step=1, names=["head"])


def test_support_loss_draws_mean_and_a_percentile_band():
    losses = torch.tensor([[2.0, 1.0, 0.5], [4.0, 2.0, 1.0]])
    fig = rendered(draw_support_loss({"trained": losses, "SGD": losses + 1}))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert np.allclose(ax.lines[0].get_ydata(), [3.0, 1.5, 0.75])
    assert ax.get_yscale() == "log"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert math.isclose(band.min(), 0.55) and math.isclose(band.max(), 3.8)


def test_support_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one curve"):
        draw_support_loss({})
    with pytest.raises(ValueError, match="must be \\[tasks, steps\\]"):
        draw_support_loss({"flat": torch.ones(3)})
