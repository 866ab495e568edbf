"""Task figures: each function returns a Figure, opens no pyplot window, rejects bad input."""

import subprocess
import sys

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from metalearn_edu.data import Omniglot
from metalearn_edu.plots import (
    draw_episode,
    draw_omniglot_alphabets,
    draw_sinusoid_family,
)
from metalearn_edu.tasks import Episode, LinearTasks, SinusoidTasks


def image_episode(ways=3, shots=2, queries=4, tasks=2) -> Episode:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(ways)
    return Episode(
        torch.rand(tasks, ways * shots, 1, 28, 28, generator=g),
        labels.repeat_interleave(shots).expand(tasks, -1),
        torch.rand(tasks, ways * queries, 1, 28, 28, generator=g),
        labels.repeat_interleave(queries).expand(tasks, -1),
    )


def rendered(fig: Figure) -> Figure:
    fig.canvas.draw()  # raises if anything in the figure is broken
    return fig


def test_draw_image_episode_has_support_and_query_grids():
    fig = rendered(draw_episode(image_episode(), task=1, max_queries=3))
    assert isinstance(fig, Figure)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 3 * 2 + 3 * 3
    labels = {ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()}
    assert labels == {"0", "1", "2"}
    titles = " ".join(ax.get_title(loc="left") for ax in fig.axes)
    assert "support (6)" in titles and "query (12)" in titles
    assert plt.get_fignums() == []  # the object API: no pyplot figure left open


@pytest.mark.parametrize("tasks", [SinusoidTasks(5, 20), LinearTasks(4, 8)])
def test_draw_regression_episode(tasks):
    fig = rendered(draw_episode(tasks.sample(2, torch.Generator().manual_seed(0))))
    (ax,) = fig.axes
    assert len(ax.collections) == 2  # support and query points


def test_draw_episode_rejects_other_shapes():
    e = Episode(
        torch.zeros(1, 3, 2), torch.zeros(1, 3, 1), torch.zeros(1, 3, 2), torch.zeros(1, 3, 1)
    )
    with pytest.raises(ValueError, match="support_x"):
        draw_episode(e)
    with pytest.raises(IndexError):
        draw_episode(image_episode(tasks=2), task=2)


def test_draw_sinusoid_family():
    fig = rendered(draw_sinusoid_family(num_tasks=4, seed=1))
    (ax,) = fig.axes
    assert len(ax.lines) == 4 and len(ax.collections) == 4
    fig = draw_sinusoid_family(amplitude=[1.0, 2.0], phase=[0.0, 1.0], show_support=False)
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and not ax.collections
    assert ax.lines[1].get_ydata().max() == pytest.approx(2.0, abs=0.01)


def test_draw_omniglot_alphabets():
    names = tuple(f"alphabet{a}/character{c:02d}" for a in range(5) for c in range(1, 4))
    images = torch.randint(0, 256, (15, 20, 28, 28), dtype=torch.uint8)
    data = Omniglot(images, names, torch.tensor([True] * 9 + [False] * 6))
    fig = rendered(
        draw_omniglot_alphabets(
            data, alphabets=["alphabet1", "alphabet4"], characters_per_alphabet=4
        )
    )
    assert sum(bool(ax.images) for ax in fig.axes) == 2 * 3  # 3 characters each, 4th cell empty
    assert len(draw_omniglot_alphabets(data, alphabets=2, characters_per_alphabet=2).axes) == 4
    with pytest.raises(ValueError, match="unknown alphabets"):
        draw_omniglot_alphabets(data, alphabets=["Klingon"])


def test_importing_tasks_does_not_import_matplotlib_or_pil():
    code = (
        "import sys, metalearn_edu.tasks, metalearn_edu.data; "
        "print([m for m in ('matplotlib', 'PIL') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
