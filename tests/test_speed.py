"""Roofline floors, operation and FLOP counts, the inner step's vector-Jacobian product, and the
figures of notebook 09."""

from __future__ import annotations

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu import bench, roofline
from metalearn_edu.diagnostics import count_flops, count_operations
from metalearn_edu.inner_loop import step_vjp
from metalearn_edu.plots.speed import draw_execution_times, draw_time_per_iteration


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_iteration_floor_is_the_largest_of_compute_traffic_and_launches():
    assert roofline.iteration_floor(2e12, 1e9, 10, 1e12, 1e12, 1e-6) == pytest.approx(2.0)
    assert roofline.iteration_floor(1e9, 3e12, 10, 1e12, 1e12, 1e-6) == pytest.approx(3.0)
    assert roofline.iteration_floor(1e9, 1e9, 10**7, 1e12, 1e12, 1e-6) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="positive"):
        roofline.iteration_floor(1, 1, 1, 0, 1, 0)
    with pytest.raises(ValueError, match="negative"):
        roofline.iteration_floor(-1, 1, 1, 1, 1, 0)
    f = roofline.floors(67e9, 4.8e9, 1000, roofline.H200, 5e-6)
    assert f["compute (FP32)"] == pytest.approx(1e-3) and f["memory traffic"] == pytest.approx(1e-3)
    assert f["launches"] == pytest.approx(5e-3) and f["compute (TF32)"] < f["compute (FP32)"]


def test_committed_anchors_name_card_versions_and_source():
    anchors = roofline.load_anchors()
    assert anchors["card"] == "NVIDIA H200" and anchors["versions"]["torch"]
    assert "issue 7" in anchors["source"]
    second = anchors["it_per_s"]["omniglot-5w1s second order"]
    assert second["learn2learn"] == 1.85 and second["vmap + torch.compile"] == 84


def test_flops_of_a_matrix_product_are_two_per_multiply_add():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    result, flops = count_flops(lambda: a @ b)
    assert flops == 2 * 8 * 16 * 4 and torch.equal(result, a @ b)
    _, operations, written = count_operations(lambda: (a @ b).relu())
    assert operations == 2 and written == 2 * 8 * 4 * 4  # two [8, 4] float32 outputs


def test_a_loop_over_tasks_launches_per_task_while_vmap_does_not():
    counts = {}
    for execution in ("loop", "vmap"):
        for tasks in (2, 4):
            algorithm, params, episode = bench.workload("sinusoid", tasks, 1, False, execution)
            _, counts[execution, tasks], written = count_operations(
                lambda a=algorithm, p=params, e=episode: a.meta_gradient(p, e)
            )
            assert written > sum(p.numel() * 4 for p in params.values())  # at least ∇θ
    per_task = (counts["loop", 4] - counts["loop", 2]) / 2
    assert per_task > 20  # every task repeats the forward, backward and double backward
    assert counts["vmap", 4] == counts["vmap", 2]


def test_step_vjp_is_v_minus_alpha_hessian_v():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.eye(5, dtype=torch.float64)  # L(θ) = ½ θᵀAθ + bᵀθ, ∇²L = A
    b = torch.randn(5, generator=g, dtype=torch.float64)
    theta = torch.randn(5, generator=g, dtype=torch.float64)
    v = torch.randn(5, generator=g, dtype=torch.float64)

    def loss(t):
        return 0.5 * t @ a @ t + b @ t

    assert torch.allclose(step_vjp(loss, theta, v, 0.1), v - 0.1 * a @ v, atol=1e-12)

    def cubic(t):  # a non-quadratic loss: against autograd through the step itself
        return (t**3).sum() + (t[:-1] * t[1:]).sum()

    leaf = theta.clone().requires_grad_()
    (grad,) = torch.autograd.grad(cubic(leaf), leaf, create_graph=True)
    (expected,) = torch.autograd.grad(leaf - 0.1 * grad, leaf, v)
    assert torch.allclose(step_vjp(cubic, theta, v, 0.1), expected, atol=1e-12)


def test_speed_figures():
    fig = draw_time_per_iteration({"loop": 1.85, "vmap": 22}, {"launches": 0.01}, "Omniglot")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["loop", "vmap", "floor: launches"]
    assert [p.get_width() for p in ax.patches] == pytest.approx([1e3 / 1.85, 1e3 / 22, 10])
    with pytest.raises(ValueError, match="positive"):
        draw_time_per_iteration({"loop": 0.0}, {}, "x")
    fig = draw_execution_times({"loop": 12.0, "vmap": 2.0}, "sinusoid")
    assert [p.get_height() for p in fig.axes[0].patches] == [12.0, 2.0]
    assert "×6.0" in fig.axes[0].texts[1].get_text()
    with pytest.raises(ValueError, match="positive"):
        draw_execution_times({}, "x")
