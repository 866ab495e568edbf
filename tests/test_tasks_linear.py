"""Two-parameter linear regression tasks: distribution, loss surface, closed-form minimum."""

import pytest
import torch

from metalearn_edu.tasks import LinearTasks, TaskDistribution, least_squares, linear_loss


def test_shapes_ranges_and_determinism():
    tasks = LinearTasks(support_size=6, query_size=9)
    assert isinstance(tasks, TaskDistribution)
    e = tasks.sample(5, torch.Generator().manual_seed(0))
    assert e.support_x.shape == (5, 6, 1) and e.query_y.shape == (5, 9, 1)
    theta = tasks.sample_parameters(10_000, torch.Generator().manual_seed(1))
    assert theta.shape == (10_000, 2)
    assert theta.min() >= -2.0 and theta.max() <= 2.0
    again = tasks.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(e.query_y, again.query_y)


def test_noise_free_points_lie_on_the_line():
    tasks = LinearTasks(noise_std=0.0)
    theta = torch.tensor([[1.5, -0.5], [-2.0, 1.0]])
    e = tasks.episode(theta, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        e.support_y, theta[:, 0, None, None] * e.support_x + theta[:, 1, None, None]
    )
    torch.testing.assert_close(least_squares(e.support_x, e.support_y), theta, atol=1e-4, rtol=0)


def test_noise_has_the_requested_scale():
    tasks = LinearTasks(support_size=200, query_size=1, noise_std=0.3)
    theta = tasks.sample_parameters(50, torch.Generator().manual_seed(3))
    e = tasks.episode(theta, torch.Generator().manual_seed(4))
    residual = e.support_y - (theta[:, 0, None, None] * e.support_x + theta[:, 1, None, None])
    assert residual.std().item() == pytest.approx(0.3, rel=0.05)


def test_least_squares_matches_lstsq_and_minimises_the_loss():
    tasks = LinearTasks(support_size=12)
    e = tasks.sample(4, torch.Generator().manual_seed(5)).to(dtype=torch.float64)
    theta = least_squares(e.support_x, e.support_y)
    design = torch.cat([e.support_x, torch.ones_like(e.support_x)], dim=-1)
    reference = torch.linalg.lstsq(design, e.support_y).solution.squeeze(-1)
    torch.testing.assert_close(theta, reference)
    # gradient of the mean squared error is zero at the minimum (autograd, float64)
    t = theta.clone().requires_grad_()
    (grad,) = torch.autograd.grad(linear_loss(t, e.support_x, e.support_y).sum(), t)
    assert grad.abs().max() < 1e-10


def test_loss_surface_over_a_grid():
    tasks = LinearTasks()
    e = tasks.sample(1, torch.Generator().manual_seed(6))
    w, b = torch.meshgrid(torch.linspace(-3, 3, 11), torch.linspace(-3, 3, 7), indexing="ij")
    grid = torch.stack([w, b], dim=-1)  # [11, 7, 2]
    surface = linear_loss(grid, e.support_x[0], e.support_y[0])
    assert surface.shape == (11, 7)
    i, j = 4, 2
    direct = ((w[i, j] * e.support_x[0] + b[i, j] - e.support_y[0]) ** 2).mean()
    torch.testing.assert_close(surface[i, j], direct)


def test_bad_arguments():
    with pytest.raises(ValueError, match="noise_std"):
        LinearTasks(noise_std=-1.0)
    with pytest.raises(ValueError, match="weight_range"):
        LinearTasks(weight_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="support_size"):
        LinearTasks(support_size=0)
