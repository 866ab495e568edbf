"""The shared inner loop: SGD steps, first/second order, per-parameter rates, partial adaptation."""

from __future__ import annotations

import math

import pytest
import torch

from metalearn_edu.inner_loop import adapt, check_inner_settings


def quadratic(params):
    # L(a, b) = a³ + 2 a b² + b: non-zero Hessian, including a cross term
    a, b = params["a"], params["b"]
    return (a**3 + 2 * a * b**2 + b).sum()


def start():
    return {
        "a": torch.tensor([0.5], dtype=torch.float64),
        "b": torch.tensor([-1.0], dtype=torch.float64),
    }


def manual_sgd(params, lr, steps, names=("a", "b")):
    a, b = params["a"].item(), params["b"].item()
    for _ in range(steps):
        ga, gb = 3 * a**2 + 2 * b**2, 4 * a * b + 1
        a, b = (a - lr["a"] * ga if "a" in names else a), (b - lr["b"] * gb if "b" in names else b)
    return a, b


@pytest.mark.parametrize("gradient", ["autograd", "func"])
@pytest.mark.parametrize("steps", [1, 4])
def test_adapt_takes_sgd_steps(gradient, steps):
    params = {n: p.requires_grad_() for n, p in start().items()}
    lr = {
        "a": torch.tensor([0.1], dtype=torch.float64),
        "b": torch.tensor([0.03], dtype=torch.float64),
    }
    for inner_lr, rates in ((0.05, {"a": 0.05, "b": 0.05}), (lr, {"a": 0.1, "b": 0.03})):
        adapted = adapt(quadratic, params, inner_lr=inner_lr, inner_steps=steps, gradient=gradient)
        a, b = manual_sgd(params, rates, steps)
        assert adapted["a"].item() == pytest.approx(a, abs=1e-14)
        assert adapted["b"].item() == pytest.approx(b, abs=1e-14)


def test_adapt_names_leaves_the_others_untouched():
    params = {n: p.requires_grad_() for n, p in start().items()}
    adapted = adapt(quadratic, params, inner_lr=0.1, inner_steps=3, adapt_names=["b"])
    assert adapted["a"] is params["a"]
    assert adapted["b"].item() == pytest.approx(manual_sgd(params, {"a": 0.1, "b": 0.1}, 3, "b")[1])


def test_second_order_differentiates_through_the_step_and_first_order_does_not():
    params = {n: p.requires_grad_() for n, p in start().items()}
    lr = 0.1
    second = adapt(quadratic, params, inner_lr=lr, inner_steps=1)["a"]
    first = adapt(quadratic, params, inner_lr=lr, inner_steps=1, first_order=True)["a"]
    # a' = a − lr (3a² + 2b²): da'/da = 1 − 6 lr a, da'/db = −4 lr b
    a, b = 0.5, -1.0
    d_second = torch.autograd.grad(second.sum(), [params["a"], params["b"]])
    d_first = torch.autograd.grad(first.sum(), [params["a"], params["b"]], allow_unused=True)
    assert d_second[0].item() == pytest.approx(1 - 6 * lr * a)
    assert d_second[1].item() == pytest.approx(-4 * lr * b)
    assert d_first[0].item() == pytest.approx(1.0)
    assert d_first[1] is None


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf, "0.1"])
def test_non_positive_or_invalid_step_size_is_rejected(lr):
    with pytest.raises(ValueError, match="inner_lr must be a positive"):
        adapt(quadratic, start(), inner_lr=lr, inner_steps=1)


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_non_positive_or_non_integer_step_count_is_rejected(steps):
    with pytest.raises(ValueError, match="inner_steps must be a positive integer"):
        check_inner_settings(0.1, steps)


def test_unknown_parameter_names_are_rejected():
    with pytest.raises(ValueError, match=r"unknown parameters \['c'\]"):
        adapt(quadratic, start(), inner_lr=0.1, inner_steps=1, adapt_names=["c"])
