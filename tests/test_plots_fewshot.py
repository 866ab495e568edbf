"""Few-shot figures: each returns a Figure that renders, opens no window, rejects bad input."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.plots.fewshot import (
    draw_accuracy_by_steps,
    draw_accuracy_curves,
    draw_class_probabilities,
    draw_predictions,
)


def rendered(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # raises if anything in the figure is broken
    return fig


def history(n=120, validation=True):
    train = {
        "iteration": list(range(n)),
        "pre_loss": [1.6] * n,
        "post_loss": [1.0] * n,
        "pre_accuracy": [0.2] * n,
        "post_accuracy": [min(1.0, 0.2 + i / n) for i in range(n)],
    }
    val = {"iteration": [], "loss": [], "loss_ci95": [], "accuracy": [], "accuracy_ci95": []}
    if validation:
        val.update(iteration=[60, 120], loss=[1.0, 0.5], loss_ci95=[0.1, 0.1])
        val.update(accuracy=[0.6, 0.9], accuracy_ci95=[0.03, 0.02])
    return {"train": train, "validation": val}


def task(ways=5, shots=1, queries=3):
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(ways * shots, 1, 28, 28, generator=g)
    qx = torch.rand(ways * queries, 1, 28, 28, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots)
    qy = torch.arange(ways).repeat_interleave(queries)
    return sx, sy, qx, qy


@pytest.mark.parametrize(("n", "window", "validation"), [(1, 50, False), (120, 50, True)])
def test_accuracy_curves(n, window, validation):
    fig = rendered(draw_accuracy_curves(history(n, validation), window=window, chance=0.2))
    ax = fig.axes[0]
    assert len(ax.lines) >= 3  # before, after, chance
    assert ax.get_legend() is not None


def test_accuracy_curves_need_iterations():
    with pytest.raises(ValueError, match="no training iterations"):
        draw_accuracy_curves(history(0, False))


def test_predictions_colour_right_and_wrong():
    sx, sy, qx, qy = task()
    before = torch.zeros(len(qy), dtype=torch.long)  # right only for class 0
    after = torch.nn.functional.one_hot(qy, 5).float()  # logits: all right
    fig = rendered(draw_predictions(sx, sy, qx, qy, before, after, max_queries=10))
    titled = [ax for ax in fig.axes if ax.get_title().startswith("true")]
    assert len(titled) == 2 * 10
    colours = [ax.title.get_color() for ax in titled]
    assert colours[10:] == ["tab:green"] * 10
    assert colours[:10].count("tab:green") == 2  # the two class-0 queries shown
    # the first query of every class is shown
    shown = {ax.get_title().split()[1] for ax in titled}
    assert shown == {"0", "1", "2", "3", "4"}


def test_predictions_with_few_queries_and_bad_input():
    sx, sy, qx, qy = task(ways=2, shots=3, queries=1)
    rendered(draw_predictions(sx, sy, qx, qy, qy, qy, max_queries=1))
    with pytest.raises(ValueError, match="predict the 2 queries"):
        draw_predictions(sx, sy, qx, qy, qy[:1], qy)
    with pytest.raises(ValueError, match="max_queries"):
        draw_predictions(sx, sy, qx, qy, qy, qy, max_queries=0)


def test_class_probabilities_highlight_the_best_class():
    sx, sy, qx, _ = task()
    probs = torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1])
    fig = rendered(draw_class_probabilities(sx, sy, qx[0], probs))
    bars = fig.axes[-1].patches
    assert len(bars) == 5
    assert [b.get_height() for b in bars] == pytest.approx(probs.tolist())
    assert "class 1" in fig.axes[-1].get_title()


@pytest.mark.parametrize("steps", [0, 10])
def test_accuracy_by_steps(steps):
    accuracies = torch.rand(30, steps + 1, generator=torch.Generator().manual_seed(1))
    fig = rendered(draw_accuracy_by_steps(accuracies, train_steps=1, marked=(1, 3, 10)))
    assert "30 test tasks" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="tasks, steps"):
        draw_accuracy_by_steps(accuracies[:, 0])


def test_no_pyplot_figures_are_left_open():
    before = plt.get_fignums()
    sx, sy, qx, qy = task()
    draw_predictions(sx, sy, qx, qy, qy, qy)
    draw_accuracy_curves(history())
    assert plt.get_fignums() == before
