"""MAML's meta-gradient: against a closed form, finite differences, and across executions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _maml_helpers import (
    classification_episode,
    finite_difference_grad,
    float64,
    max_abs_diff,
    meta_loss,
    one_thread,
    regression_episode,
)

from metalearn_edu.algorithms import FOMAML, MAML
from metalearn_edu.models import MLP, Conv4
from metalearn_edu.models import conv4 as conv4_module


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


EXECUTIONS = ["loop", "functional", "vmap"]


def closed_form_maml_gradient(w, b, episode, inner_lr, inner_steps):
    """MAML on y ≈ [x, 1] θ with squared loss L(θ) = |Aθ − y|² / n, by linear algebra.

    Each inner step is affine: θ' = Mθ + c with M = I − α H_s, H_s = 2 A_sᵀA_s / n_s, so
    dθ'_K/dθ = M^K (symmetric) and the task's meta-gradient is M^K ∇L_q(θ'_K).
    """
    theta = torch.cat([w.reshape(-1), b.reshape(-1)])
    total = torch.zeros_like(theta)
    for i in range(episode.num_tasks):
        ones_s = torch.ones(episode.support_x.shape[1], 1, dtype=theta.dtype)
        ones_q = torch.ones(episode.query_x.shape[1], 1, dtype=theta.dtype)
        a_s, y_s = torch.cat([episode.support_x[i], ones_s], 1), episode.support_y[i][:, 0]
        a_q, y_q = torch.cat([episode.query_x[i], ones_q], 1), episode.query_y[i][:, 0]
        h_s = 2 * a_s.T @ a_s / len(y_s)
        m = torch.eye(len(theta), dtype=theta.dtype) - inner_lr * h_s
        phi = theta
        for _ in range(inner_steps):
            phi = phi - inner_lr * 2 * a_s.T @ (a_s @ phi - y_s) / len(y_s)
        grad_query = 2 * a_q.T @ (a_q @ phi - y_q) / len(y_q)
        total += torch.linalg.matrix_power(m, inner_steps) @ grad_query
    total /= episode.num_tasks
    return total[:-1].reshape(w.shape), total[-1:].reshape(b.shape)


@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("execution", EXECUTIONS)
def test_meta_gradient_equals_closed_form_on_linear_regression(inner_steps, execution):
    model = MLP((3, 1), init_scheme="xavier")
    episode = regression_episode(tasks=4, support=5, query=7, features=3)
    params = float64(model.init(torch.Generator().manual_seed(1)))
    params["layer0.bias"] += 0.3
    maml = MAML(model, inner_lr=0.05, inner_steps=inner_steps, execution=execution)
    grads, _ = maml.meta_gradient(params, episode)
    w, b = closed_form_maml_gradient(
        params["layer0.weight"], params["layer0.bias"], episode, 0.05, inner_steps
    )
    assert torch.allclose(grads["layer0.weight"], w, rtol=0, atol=1e-12)
    assert torch.allclose(grads["layer0.bias"], b, rtol=0, atol=1e-12)
    # the Hessian term matters here: ignoring it (first order) gives a different answer
    fo, _ = FOMAML(model, inner_lr=0.05, inner_steps=inner_steps).meta_gradient(params, episode)
    assert (fo["layer0.weight"] - w).abs().max() > 1e-3


# Central differences with h = 1e-5 in float64: truncation error ~h² and rounding ~1e-16/h, both
# far below the 1e-7 tolerance; a wrong Hessian term shows up at 1e-2 or more (see the FO check).
FD_TOL = 1e-7


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_gradient_equals_finite_differences_on_mlp(inner_steps):
    model = MLP((1, 6, 6, 1), activation="tanh", init_scheme="xavier")
    episode = regression_episode(tasks=2)
    params = float64(model.init(torch.Generator().manual_seed(2)))
    maml = MAML(model, inner_lr=0.3, inner_steps=inner_steps, execution="loop")
    grads, _ = maml.meta_gradient(params, episode)
    numeric = finite_difference_grad(meta_loss(maml, episode), params)
    assert max_abs_diff(grads, numeric) < FD_TOL
    fo, _ = FOMAML(model, inner_lr=0.3, inner_steps=inner_steps).meta_gradient(params, episode)
    assert max_abs_diff(fo, numeric) > 1e-4


def _executions_agree(algorithm_factory, model, episode, params):
    grads = {ex: algorithm_factory(ex).meta_gradient(params, episode) for ex in EXECUTIONS}
    for ex in ("functional", "vmap"):
        assert max_abs_diff(grads[ex][0], grads["loop"][0]) < 1e-10, ex
        assert grads[ex][1]["post_loss"] == pytest.approx(grads["loop"][1]["post_loss"], abs=1e-12)
    return grads["loop"][0]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_three_executions_agree_on_mlp(first_order, inner_steps):
    model = MLP((1, 8, 8, 1), init_scheme="xavier")
    episode = regression_episode(tasks=4, seed=3)
    params = float64(model.init(torch.Generator().manual_seed(3)))

    def make(ex):
        return MAML(model, 0.2, inner_steps, first_order, execution=ex)

    grad = _executions_agree(make, model, episode, params)
    assert max(g.abs().max() for g in grad.values()) > 1e-3  # a real, non-zero gradient


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("first_order", [False, True])
def test_three_executions_agree_on_conv4(downsample, first_order):
    model = Conv4(ways=3, image_size=16, hidden=4, downsample=downsample)
    episode = classification_episode(tasks=3, image_size=16, seed=4)
    params = float64(model.init(torch.Generator().manual_seed(4)))

    def make(ex):
        return MAML(model, 0.4, 2, first_order, execution=ex)

    _executions_agree(make, model, episode, params)


def test_non_transductive_batch_norm_executions_agree_and_differ_from_transductive():
    model = Conv4(ways=3, image_size=8, hidden=4, transductive=False)
    episode = classification_episode(tasks=2, seed=5)
    params = float64(model.init(torch.Generator().manual_seed(5)))

    def make(ex):
        return MAML(model, 0.4, 1, execution=ex)

    grad = _executions_agree(make, model, episode, params)
    transductive = Conv4(ways=3, image_size=8, hidden=4)
    other, _ = MAML(transductive, 0.4, 1).meta_gradient(params, episode)
    assert max_abs_diff(grad, other) > 1e-4


def test_first_order_equals_second_order_when_inner_loss_is_linear_in_parameters():
    # f(x) = Wx + b with loss −mean(f(x)·y): the inner loss is linear in θ, its Hessian is zero.
    model = MLP((2, 1), init_scheme="xavier")
    episode = regression_episode(tasks=3, features=2, seed=6)
    params = float64(model.init(torch.Generator().manual_seed(6)))

    def linear_loss(prediction, target):
        return -(prediction * target).mean()

    for execution in EXECUTIONS:
        so, _ = MAML(model, 0.5, 3, execution=execution, loss_fn=linear_loss).meta_gradient(
            params, episode
        )
        fo, _ = FOMAML(model, 0.5, 3, execution=execution, loss_fn=linear_loss).meta_gradient(
            params, episode
        )
        assert max_abs_diff(so, fo) < 1e-12
        assert max(g.abs().max() for g in so.values()) > 1e-2


def _native_batch_norm(x, weight, bias, stats_from=None, eps=1e-5):
    assert stats_from is None
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)


def _vmap_forward_autograd_backward(maml, params, episode):
    """The pattern of the torch.func MAML-Omniglot example: vmap the per-task loss over tasks
    (inner gradients from torch.func.grad), then one autograd backward for the meta-gradient."""
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}

    def task_loss(sx, sy, qx, qy):
        return maml.task_objective(leaves, sx, sy, qx, qy, gradient="func")[0]

    losses = torch.func.vmap(task_loss)(
        episode.support_x, episode.support_y, episode.query_x, episode.query_y
    )
    grads = torch.autograd.grad(losses.mean(), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


def test_batch_norm_with_explicit_statistics_survives_vmap_but_native_kernel_does_not(monkeypatch):
    """The trap this library avoids: under vmap over tasks, the second-order meta-gradient
    through PyTorch's native batch-norm kernel is wrong (measured with torch 2.13 CPU); the explicit
    mean/variance form agrees with the per-task loop and with finite differences."""
    model = Conv4(ways=3, image_size=8, hidden=3)
    episode = classification_episode(tasks=2, seed=7)
    params = float64(model.init(torch.Generator().manual_seed(7)))
    maml = MAML(model, inner_lr=0.4, inner_steps=1)

    loop, _ = MAML(model, 0.4, 1, execution="loop").meta_gradient(params, episode)
    vmapped, _ = MAML(model, 0.4, 1, execution="vmap").meta_gradient(params, episode)
    vmap_autograd = _vmap_forward_autograd_backward(maml, params, episode)
    numeric = finite_difference_grad(meta_loss(maml, episode), params)
    assert max_abs_diff(loop, numeric) < FD_TOL
    assert max_abs_diff(vmapped, loop) < 1e-10
    assert max_abs_diff(vmap_autograd, loop) < 1e-10

    monkeypatch.setattr(conv4_module, "batch_norm", _native_batch_norm)
    native_loop, _ = MAML(model, 0.4, 1, execution="loop").meta_gradient(params, episode)
    assert max_abs_diff(native_loop, loop) < 1e-10  # same function: the loop is still right
    native_vmap_autograd = _vmap_forward_autograd_backward(maml, params, episode)
    # If this fails, PyTorch has fixed the kernel: update the warning in models/batchnorm.py.
    assert max_abs_diff(native_vmap_autograd, loop) > 1e-4
