"""Sinusoid tasks: MAML's distribution (Finn et al. 2017, §5.1), shapes and seeded determinism."""

import math

import pytest
import torch

from metalearn_edu.tasks import Episode, SinusoidTasks, TaskDistribution


def test_is_a_task_distribution_with_regression_shapes():
    tasks = SinusoidTasks(support_size=5, query_size=7)
    assert isinstance(tasks, TaskDistribution)
    e = tasks.sample(3, torch.Generator().manual_seed(0))
    assert isinstance(e, Episode)
    assert e.support_x.shape == (3, 5, 1) and e.support_y.shape == (3, 5, 1)
    assert e.query_x.shape == (3, 7, 1) and e.query_y.shape == (3, 7, 1)
    assert e.support_x.dtype == e.support_y.dtype == torch.float32


def test_parameter_and_input_ranges_match_the_paper():
    tasks = SinusoidTasks()
    amplitude, phase = tasks.sample_parameters(20_000, torch.Generator().manual_seed(1))
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= math.pi
    # uniform: mean and standard deviation of U[a, b] are (a + b) / 2 and (b - a) / sqrt(12)
    assert amplitude.mean() == pytest.approx(2.55, abs=0.05)
    assert amplitude.std() == pytest.approx(4.9 / math.sqrt(12), abs=0.03)
    assert phase.mean() == pytest.approx(math.pi / 2, abs=0.03)
    e = tasks.sample(2000, torch.Generator().manual_seed(2))
    for x in (e.support_x, e.query_x):
        assert -5.0 <= x.min() and x.max() <= 5.0
        assert x.mean() == pytest.approx(0.0, abs=0.1)


def test_targets_are_a_sin_x_minus_phase():
    tasks = SinusoidTasks()
    amplitude, phase = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])
    e = tasks.episode(amplitude, phase, torch.Generator().manual_seed(0))
    expected = amplitude[:, None, None] * torch.sin(e.query_x - phase[:, None, None])
    torch.testing.assert_close(e.query_y, expected)
    torch.testing.assert_close(e.support_y[0], torch.sin(e.support_x[0]))


def test_same_seed_same_episode_different_seed_different():
    tasks = SinusoidTasks()
    a = tasks.sample(4, torch.Generator().manual_seed(7))
    b = tasks.sample(4, torch.Generator().manual_seed(7))
    c = tasks.sample(4, torch.Generator().manual_seed(8))
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.support_x, c.support_x)


def test_support_in_one_half_of_the_range():
    tasks = SinusoidTasks(support_size=10, query_size=50)
    amplitude, phase = tasks.sample_parameters(8, torch.Generator().manual_seed(0))
    e = tasks.episode(amplitude, phase, torch.Generator().manual_seed(1), support_range=(-5.0, 0.0))
    assert e.support_x.max() <= 0.0
    assert e.query_x.max() > 0.0  # the query still covers the whole range


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"support_size": 0}, "support_size"),
        ({"query_size": -1}, "query_size"),
        ({"amplitude_range": (5.0, 0.1)}, "amplitude_range"),
        ({"input_range": (1.0, 1.0)}, "input_range"),
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SinusoidTasks(**kwargs)


def test_bad_meta_batch_size():
    with pytest.raises(ValueError, match="meta_batch_size"):
        SinusoidTasks().sample(0)
