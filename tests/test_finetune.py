"""Fine-tuning curves and the pretrained baseline, against the library's inner loop and by hand."""

import math

import pytest
import torch

from metalearn_edu.finetune import adaptation_curve, adapted_sequence, pretrain, tune_inner_lr
from metalearn_edu.inner_loop import adapt
from metalearn_edu.losses import task_loss
from metalearn_edu.models import MLP
from metalearn_edu.tasks import LinearTasks, SinusoidTasks
from metalearn_edu.tasks.linear import linear_loss

MODEL = MLP((1, 8, 8, 1), init_scheme="xavier")


def double(params):
    return {n: p.double() for n, p in params.items()}


def episode(tasks=3):
    return (
        SinusoidTasks(5, 7).sample(tasks, torch.Generator().manual_seed(0)).to(dtype=torch.float64)
    )


def test_adapted_sequence_matches_the_shared_inner_loop_step_by_step():
    params = double(MODEL.init(torch.Generator().manual_seed(1)))
    ep = episode()
    sequence = adapted_sequence(MODEL, params, ep.support_x, ep.support_y, inner_lr=0.05, steps=3)
    assert len(sequence) == 4
    for t in range(ep.num_tasks):
        for k in range(4):
            if k == 0:
                expected = params
            else:
                leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
                expected = adapt(
                    lambda p, t=t: task_loss(MODEL.forward(p, ep.support_x[t]), ep.support_y[t]),
                    leaves,
                    inner_lr=0.05,
                    inner_steps=k,
                    first_order=True,
                )
            for n in params:
                torch.testing.assert_close(sequence[k][n][t], expected[n].detach())


def test_adaptation_curve_on_linear_regression_matches_the_closed_form_step():
    model = MLP((1, 1))
    tasks = LinearTasks(6, 9).sample(4, torch.Generator().manual_seed(2)).to(dtype=torch.float64)
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    params = {"layer0.weight": theta[:1].reshape(1, 1), "layer0.bias": theta[1:]}
    curve = adaptation_curve(model, params, tasks, inner_lr=0.1, steps=2)
    assert curve.shape == (3, 4)
    for t in range(4):
        x, y = tasks.support_x[t, :, 0], tasks.support_y[t, :, 0]
        current = theta.clone()
        for k in range(3):
            expected = linear_loss(current, tasks.query_x[t], tasks.query_y[t])
            assert math.isclose(curve[k, t].item(), expected.item(), rel_tol=1e-10)
            residual = current[0] * x + current[1] - y  # d/dθ mean(r²) = 2 mean(r·[x, 1])
            current = current - 0.1 * 2 * torch.stack([(residual * x).mean(), residual.mean()])


def test_zero_steps_is_the_unadapted_loss_and_bad_settings_are_refused():
    params = double(MODEL.init(torch.Generator().manual_seed(1)))
    ep = episode()
    curve = adaptation_curve(MODEL, params, ep, inner_lr=0.01, steps=0)
    expected = torch.stack(
        [task_loss(MODEL.forward(params, ep.query_x[t]), ep.query_y[t]) for t in range(3)]
    )
    torch.testing.assert_close(curve[0], expected)
    with pytest.raises(ValueError, match="steps"):
        adaptation_curve(MODEL, params, ep, inner_lr=0.01, steps=-1)
    with pytest.raises(ValueError, match="inner_lr"):
        adaptation_curve(MODEL, params, ep, inner_lr=0.0, steps=1)


def test_tune_inner_lr_picks_the_best_finite_candidate():
    params = double(MODEL.init(torch.Generator().manual_seed(1)))
    ep = episode(8)
    candidates = [1e-4, 0.02, 0.1, 1e6]  # 1e6 diverges
    best = tune_inner_lr(MODEL, params, ep, candidates, steps=3)
    scores = {
        lr: adaptation_curve(MODEL, params, ep, inner_lr=lr, steps=3)[1:].mean().item()
        for lr in candidates[:3]
    }
    assert best == min(scores, key=scores.get)
    with pytest.raises(FloatingPointError, match="diverged"):
        tune_inner_lr(MODEL, params, ep, [1e30], steps=3)
    with pytest.raises(ValueError, match="candidate"):
        tune_inner_lr(MODEL, params, ep, [], steps=3)


def test_pretrain_lowers_the_pooled_loss_and_is_reproducible():
    tasks = LinearTasks(5, 5, weight_range=(1.0, 1.5), bias_range=(0.5, 1.0))
    model = MLP((1, 1))
    params, history = pretrain(model, tasks, 200, meta_batch_size=8, lr=0.05, seed=3)
    again, _ = pretrain(model, tasks, 200, meta_batch_size=8, lr=0.05, seed=3)
    assert sum(history[-20:]) < 0.2 * sum(history[:20])
    for n in params:
        assert torch.equal(params[n], again[n]) and not params[n].requires_grad
    # the pooled optimum of these tasks is about the mean line w = 1.25, b = 0.75
    assert abs(params["layer0.weight"].item() - 1.25) < 0.15
    assert abs(params["layer0.bias"].item() - 0.75) < 0.15
    with pytest.raises(ValueError, match="iterations"):
        pretrain(model, tasks, -1)
