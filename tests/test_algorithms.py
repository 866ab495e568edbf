"""Reptile, Meta-SGD and ANIL against their definitions; bad settings and mismatched tasks."""

from __future__ import annotations

import pytest
import torch
from _maml_helpers import (
    classification_episode,
    float64,
    max_abs_diff,
    one_thread,
    regression_episode,
)

from metalearn_edu.algorithms import ALGORITHMS, ANIL, MAML, MetaSGD, Reptile
from metalearn_edu.losses import task_loss
from metalearn_edu.models import MLP, Conv4, sinusoid_mlp


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


EXECUTIONS = ["loop", "functional", "vmap"]


def sgd_with_torch_optim(model, params, x, y, lr, steps):
    """An independent inner loop: torch.optim.SGD on copies of the parameters."""
    phi = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    optimizer = torch.optim.SGD(phi.values(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        task_loss(model.forward(phi, x), y).backward()
        optimizer.step()
    return {n: p.detach() for n, p in phi.items()}


def test_reptile_update_equals_its_definition():
    model = MLP((1, 8, 1), init_scheme="xavier")
    episode = regression_episode(tasks=3, seed=10)
    theta = float64(model.init(torch.Generator().manual_seed(10)))
    reptile = Reptile(model, inner_lr=0.1, inner_steps=4)
    direction, _ = reptile.meta_gradient(theta, episode)

    phis = [
        sgd_with_torch_optim(model, theta, episode.support_x[i], episode.support_y[i], 0.1, 4)
        for i in range(episode.num_tasks)
    ]
    epsilon = 0.7
    for name in theta:
        mean_phi = torch.stack([phi[name] for phi in phis]).mean(0)
        expected = theta[name] + epsilon * (mean_phi - theta[name])  # θ ← θ + ε (φ̄ − θ)
        assert torch.allclose(theta[name] - epsilon * direction[name], expected, rtol=0, atol=1e-14)
    # a single SGD step of the outer optimiser with lr ε is that update
    leaves = {n: p.clone().requires_grad_() for n, p in theta.items()}
    outer = torch.optim.SGD(leaves.values(), lr=epsilon)
    for n, p in leaves.items():
        p.grad = direction[n]
    outer.step()
    for name in theta:
        mean_phi = torch.stack([phi[name] for phi in phis]).mean(0)
        assert torch.allclose(
            leaves[name], theta[name] + epsilon * (mean_phi - theta[name]), atol=1e-14
        )


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_sgd_with_equal_learning_rates_is_maml(execution, inner_steps):
    model = MLP((1, 8, 8, 1), init_scheme="xavier")
    episode = regression_episode(tasks=3, seed=11)
    meta_sgd = MetaSGD(model, inner_lr=0.2, inner_steps=inner_steps, execution=execution)
    initial = meta_sgd.init_meta_params(torch.Generator().manual_seed(11))
    assert all(torch.all(initial["inner_lr." + n] == torch.tensor(0.2)) for n in model.init())
    # in float64, α = 0.2 exactly (not float32's 0.2 cast up)
    meta_params = {
        n: torch.full_like(p, 0.2) if n.startswith("inner_lr.") else p
        for n, p in float64(initial).items()
    }
    grads, _ = meta_sgd.meta_gradient(meta_params, episode)
    params, _ = meta_sgd.split(meta_params)
    maml_grads, _ = MAML(model, 0.2, inner_steps, execution=execution).meta_gradient(
        params, episode
    )
    assert max_abs_diff({n: grads[n] for n in params}, maml_grads) < 1e-12
    # and the learning rates get a meta-gradient of their own
    assert max(grads["inner_lr." + n].abs().max() for n in params) > 1e-3


def test_meta_sgd_uses_each_learning_rate_elementwise():
    model = MLP((1, 4, 1), init_scheme="xavier")
    episode = regression_episode(tasks=1, seed=12)
    meta_sgd = MetaSGD(model, inner_lr=0.1)
    meta_params = float64(meta_sgd.init_meta_params(torch.Generator().manual_seed(12)))
    meta_params["inner_lr.layer0.weight"] = torch.rand(4, 1, dtype=torch.float64)
    leaves = {n: p.requires_grad_() for n, p in meta_params.items()}
    adapted = meta_sgd.adapt(leaves, episode.support_x[0], episode.support_y[0])
    params, _ = meta_sgd.split(leaves)
    loss = task_loss(model.forward(params, episode.support_x[0]), episode.support_y[0])
    g = torch.autograd.grad(loss, params["layer0.weight"])[0]
    expected = params["layer0.weight"] - meta_params["inner_lr.layer0.weight"] * g  # θ − α ∘ ∇
    assert torch.allclose(adapted["layer0.weight"], expected, atol=1e-14)
    with pytest.raises(ValueError, match=r"missing \['layer0.bias'\]"):
        meta_sgd.split({n: p for n, p in meta_params.items() if n != "inner_lr.layer0.bias"})


def test_anil_adapts_the_head_only_but_meta_learns_everything():
    model = Conv4(ways=3, image_size=8, hidden=4)
    episode = classification_episode(tasks=2, seed=13)
    anil = ANIL(model, inner_lr=0.4, inner_steps=3)
    theta = float64(anil.init_meta_params(torch.Generator().manual_seed(13)))
    leaves = {n: p.requires_grad_() for n, p in theta.items()}
    adapted = anil.adapt(leaves, episode.support_x[0], episode.support_y[0])
    for name in theta:
        if name in model.head_names:
            assert not torch.equal(adapted[name], theta[name])
        else:
            assert adapted[name] is leaves[name]
    grads = {
        ex: ANIL(model, 0.4, 3, execution=ex).meta_gradient(theta, episode)[0] for ex in EXECUTIONS
    }
    for ex in ("functional", "vmap"):
        assert max_abs_diff(grads[ex], grads["loop"]) < 1e-10
    assert grads["loop"]["block0.conv.weight"].abs().max() > 1e-4
    full = MAML(model, 0.4, 3).meta_gradient(theta, episode)[0]
    assert max_abs_diff(full, grads["loop"]) > 1e-4


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_mismatched_task_and_model_raise_a_clear_error(name):
    algorithm = ALGORITHMS[name](sinusoid_mlp())
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    episode = classification_episode(tasks=1)
    with pytest.raises(ValueError, match=r"MLP takes inputs of shape \(1,\)"):
        algorithm.meta_gradient(params, episode.to(dtype=torch.float32))


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_bad_settings_raise(name):
    with pytest.raises(ValueError, match="inner_lr"):
        ALGORITHMS[name](sinusoid_mlp(), inner_lr=0.0)
    with pytest.raises(ValueError, match="inner_steps"):
        ALGORITHMS[name](sinusoid_mlp(), inner_steps=0)
    with pytest.raises(ValueError, match="execution"):
        ALGORITHMS[name](sinusoid_mlp(), execution="jit")
