"""Hand-derived meta-gradients against autograd through the library's inner loop, and against
finite differences (float64)."""

import pytest
import torch

from metalearn_edu.inner_loop import adapt
from metalearn_edu.meta_gradients import (
    finite_difference,
    graph_size,
    half_quadratic,
    linear_adapt,
    linear_gradient,
    linear_hessian,
    linear_lr_hypergradient,
    linear_meta_gradient,
    quadratic_adapt,
    quadratic_lr_hypergradient,
    quadratic_meta_gradient,
)
from metalearn_edu.tasks.linear import LinearTasks, linear_loss

F64 = torch.float64
SUPPORT, QUERY = (1.5, 0.7), (0.8, -0.4)  # (curvature a, centre c) and (b, d)


def autograd_quadratic(theta, inner_lr, steps, first_order=False):
    """θ ↦ L_q(θ_K) and α ↦ L_q(θ_K) by autograd through inner_loop.adapt."""
    t = torch.tensor(theta, dtype=F64, requires_grad=True)
    lr = torch.tensor(inner_lr, dtype=F64, requires_grad=True)
    adapted = adapt(
        lambda p: half_quadratic(p["t"], *SUPPORT),
        {"t": t},
        inner_lr={"t": lr},
        inner_steps=steps,
        first_order=first_order,
    )["t"]
    loss = half_quadratic(adapted, *QUERY)
    return torch.autograd.grad(loss, [t, lr], allow_unused=True)


@pytest.mark.parametrize("steps", [1, 3])
def test_quadratic_closed_forms_match_autograd(steps):
    theta, lr = 2.0, 0.3
    d_theta, d_lr = autograd_quadratic(theta, lr, steps)
    t = torch.tensor(theta, dtype=F64)
    assert torch.isclose(
        quadratic_meta_gradient(t, lr, SUPPORT, QUERY, steps), d_theta, rtol=0, atol=1e-12
    )
    assert torch.isclose(
        quadratic_lr_hypergradient(t, lr, SUPPORT, QUERY, steps), d_lr, rtol=0, atol=1e-12
    )
    fo, _ = autograd_quadratic(theta, lr, steps, first_order=True)
    closed_fo = quadratic_meta_gradient(t, lr, SUPPORT, QUERY, steps, first_order=True)
    assert torch.isclose(closed_fo, fo, rtol=0, atol=1e-12)
    assert abs(closed_fo - d_theta) > 1e-2  # the Hessian factor matters here


def test_quadratic_adapt_is_gradient_descent():
    theta = torch.tensor(1.0, dtype=F64)
    manual = theta
    for _ in range(4):
        manual = manual - 0.2 * SUPPORT[0] * (manual - SUPPORT[1])
    assert torch.isclose(quadratic_adapt(theta, 0.2, *SUPPORT, steps=4), manual, atol=1e-14)


def linear_task(seed=0, support=6, query=9):
    g = torch.Generator().manual_seed(seed)
    e = LinearTasks(support, query).sample(3, g).to(dtype=F64)
    return e.support_x, e.support_y, e.query_x, e.query_y


def test_linear_gradient_and_hessian_match_autograd():
    sx, sy, _, _ = linear_task()
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-1.0, 2.0]], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(linear_loss(theta, sx, sy).sum(), theta)
    assert torch.allclose(linear_gradient(theta, sx, sy), g, atol=1e-12)
    h = torch.func.hessian(lambda t: linear_loss(t, sx[0], sy[0]))(theta[0].detach())
    assert torch.allclose(linear_hessian(sx[0]), h, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_linear_meta_gradient_and_hypergradient_match_autograd(steps):
    sx, sy, qx, qy = linear_task(seed=steps)
    for i in range(3):
        theta = torch.tensor([0.4, -0.3], dtype=F64, requires_grad=True)
        lr = torch.tensor(0.1, dtype=F64, requires_grad=True)
        adapted = adapt(
            lambda p, i=i: linear_loss(p["t"], sx[i], sy[i]),
            {"t": theta},
            inner_lr={"t": lr},
            inner_steps=steps,
        )["t"]
        d_theta, d_lr = torch.autograd.grad(linear_loss(adapted, qx[i], qy[i]), [theta, lr])
        t = theta.detach()
        closed = linear_meta_gradient(t, sx[i], sy[i], qx[i], qy[i], 0.1, steps)
        assert torch.allclose(closed, d_theta, rtol=0, atol=1e-12)
        hyper = linear_lr_hypergradient(t, sx[i], sy[i], qx[i], qy[i], 0.1, steps)
        assert torch.isclose(hyper, d_lr, rtol=0, atol=1e-12)
        assert torch.allclose(linear_adapt(t, sx[i], sy[i], 0.1, steps), adapted, atol=1e-12)


def test_linear_closed_forms_are_batched_over_tasks():
    sx, sy, qx, qy = linear_task()
    theta = torch.tensor([0.4, -0.3], dtype=F64)
    batched = linear_meta_gradient(theta, sx, sy, qx, qy, 0.2, 3)
    hyper = linear_lr_hypergradient(theta, sx, sy, qx, qy, 0.2, 3)
    assert batched.shape == (3, 2) and hyper.shape == (3,)
    for i in range(3):
        one = linear_meta_gradient(theta, sx[i], sy[i], qx[i], qy[i], 0.2, 3)
        assert torch.allclose(batched[i], one, atol=1e-14)
        assert torch.isclose(
            hyper[i], linear_lr_hypergradient(theta, sx[i], sy[i], qx[i], qy[i], 0.2, 3)
        )
    fo = linear_meta_gradient(theta, sx, sy, qx, qy, 0.2, 3, first_order=True)
    adapted = linear_adapt(theta, sx, sy, 0.2, 3)
    assert torch.allclose(fo, linear_gradient(adapted, qx, qy))


def test_finite_difference_agrees_with_the_closed_form():
    sx, sy, qx, qy = linear_task()
    theta = torch.tensor([0.4, -0.3], dtype=F64)

    def meta_loss(t):
        return linear_loss(linear_adapt(t, sx[0], sy[0], 0.2, 2), qx[0], qy[0])

    numeric = finite_difference(meta_loss, theta)
    assert torch.allclose(
        numeric, linear_meta_gradient(theta, sx[0], sy[0], qx[0], qy[0], 0.2, 2), atol=1e-8
    )


def test_graph_size_grows_with_create_graph():
    theta = torch.tensor(1.0, dtype=F64, requires_grad=True)
    assert graph_size(theta.detach()) == 0

    def size(create_graph, steps):
        t = theta
        for _ in range(steps):
            (g,) = torch.autograd.grad(half_quadratic(t, *SUPPORT), t, create_graph=create_graph)
            t = t - 0.1 * g
        return graph_size(half_quadratic(t, *QUERY))

    assert size(True, 2) > size(False, 2) and size(True, 3) > size(True, 2)
    assert size(False, 3) == size(False, 2) + 1  # first order: g is a constant, one sub per step


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_steps_must_be_positive_integers(steps):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        quadratic_adapt(torch.tensor(1.0), 0.1, 1.0, 0.0, steps)
