"""Random quadratics ||W theta - y||^2 (Andrychowicz et al. 2016): gradient and minimum."""

import pytest
import torch

from metalearn_edu.tasks import (
    QuadraticTasks,
    TaskDistribution,
    quadratic_gradient,
    quadratic_loss,
    quadratic_minimum,
)


def test_problem_shapes_distribution_and_episode():
    tasks = QuadraticTasks()
    assert isinstance(tasks, TaskDistribution)
    W, y = tasks.sample_problems(400, torch.Generator().manual_seed(0))
    assert W.shape == (400, 10, 10) and y.shape == (400, 10)
    assert W.mean().item() == pytest.approx(0.0, abs=0.02)
    assert W.std().item() == pytest.approx(1.0, abs=0.02)
    e = tasks.sample(3, torch.Generator().manual_seed(1))
    assert e.support_x.shape == (3, 10, 10) and e.support_y.shape == (3, 10, 1)
    assert torch.equal(e.support_x, e.query_x)
    theta0 = tasks.initial_point(1000, torch.Generator().manual_seed(2))
    assert theta0.shape == (1000, 10)
    assert theta0.std().item() == pytest.approx(0.01, rel=0.05)


def test_loss_is_the_sum_of_squared_residuals():
    W = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    y = torch.tensor([[1.0, 1.0]])
    theta = torch.tensor([[1.0, 3.0]])
    assert quadratic_loss(theta, W, y).item() == pytest.approx(1.0 + 4.0)


def test_gradient_matches_autograd_in_float64():
    W, y = QuadraticTasks().sample_problems(8, torch.Generator().manual_seed(3))
    W, y = W.double(), y.double()
    theta = torch.randn(8, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    theta.requires_grad_()
    (auto,) = torch.autograd.grad(quadratic_loss(theta, W, y).sum(), theta)
    torch.testing.assert_close(
        quadratic_gradient(theta.detach(), W, y), auto, rtol=1e-12, atol=1e-12
    )


def test_minimum_is_least_squares_and_zero_gradient():
    W, y = QuadraticTasks().sample_problems(8, torch.Generator().manual_seed(5))
    W, y = W.double(), y.double()
    theta_star = quadratic_minimum(W, y)
    # W is square and (almost surely) invertible: the minimum solves W theta = y, with loss 0
    torch.testing.assert_close(theta_star, torch.linalg.solve(W, y))
    assert quadratic_loss(theta_star, W, y).max() < 1e-12
    assert quadratic_gradient(theta_star, W, y).abs().max() < 1e-9


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        QuadraticTasks(dim=0)
    with pytest.raises(ValueError, match="meta_batch_size"):
        QuadraticTasks().sample(0)
