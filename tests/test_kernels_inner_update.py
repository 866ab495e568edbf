"""The fused inner update (kernels/inner_update.py) against its PyTorch reference.

Without a GPU the kernels run in Triton's interpreter (the root conftest.py sets TRITON_INTERPRET=1
before any kernel module is imported); the CUDA tests at the end skip there.
"""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from _maml_helpers import classification_episode, float64, regression_episode

from metalearn_edu import inner_loop
from metalearn_edu.algorithms import ANIL, MAML, MetaSGD
from metalearn_edu.kernels import inner_update as iu
from metalearn_edu.kernels._dispatch import ENV_SWITCH, interpreting, triton_available
from metalearn_edu.models import MLP, Conv4

pytestmark = pytest.mark.skipif(
    not triton_available() or sys.platform != "linux", reason="triton is Linux-only"
)
needs_interpreter_or_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() or interpreting()),
    reason="the kernel needs CUDA or TRITON_INTERPRET=1",
)

# Sizes around the block (1024 entries per program), a 0-dim parameter and a conv kernel.
SHAPES = {"conv": (4, 3, 3, 3), "w": (3, 5), "b": (1030,), "s": (), "long": (2049,)}


class LaunchCounter:
    """Wraps a Triton kernel to count its launches (``kernel[grid](...)``)."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


@pytest.fixture
def launches(monkeypatch):
    forward = LaunchCounter(iu._inner_update_forward_kernel)
    backward = LaunchCounter(iu._inner_update_backward_kernel)
    monkeypatch.setattr(iu, "_inner_update_forward_kernel", forward)
    monkeypatch.setattr(iu, "_inner_update_backward_kernel", backward)
    return forward, backward


def make(shapes, tasks=None, dtype=torch.float32, seed=0, requires_grad=True, positive=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        full = shape if tasks is None else (tasks, *shape)
        x = torch.randn(full, generator=g, dtype=dtype)
        out[name] = (x.abs() + 0.1 if positive else x).requires_grad_(requires_grad)
    return out


def inner_lrs(kind, shapes, dtype=torch.float32):
    """α of each kind: MAML's number, Meta-SGD's per entry, one number per tensor (learned)."""
    if kind == "number":
        return 0.37
    if kind == "per_entry":
        return make(shapes, dtype=dtype, seed=1, positive=True)
    g = torch.Generator().manual_seed(2)
    return {n: torch.rand((), generator=g, dtype=dtype).requires_grad_() for n in shapes}


def leaves(params, grads, lr):
    alphas = list(lr.values()) if isinstance(lr, dict) else []
    return [*params.values(), *grads.values(), *alphas]


def vjp(update, params, grads, lr, seed=3):
    """The update's outputs and the gradients of a random linear function of them."""
    out = update(params, grads, lr)
    g = torch.Generator().manual_seed(seed)
    cotangents = {n: torch.randn(out[n].shape, generator=g, dtype=out[n].dtype) for n in grads}
    total = sum((out[n] * cotangents[n]).sum() for n in grads)
    inputs = leaves(params, grads, lr)
    return out, torch.autograd.grad(total, inputs, allow_unused=True)


def assert_close_all(got, expected, **tol):
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **tol)


# --- forward and backward against the reference ----------------------------------------------


@needs_interpreter_or_cuda
@pytest.mark.parametrize("lr_kind", ["number", "per_entry", "per_tensor"])
@pytest.mark.parametrize("tasks", [None, 3], ids=["one_task", "three_tasks_shared_theta"])
def test_forward_bitwise_and_backward_close_to_reference(lr_kind, tasks, launches):
    params = make(SHAPES)
    grads = make(SHAPES, tasks=tasks, seed=4)
    lr = inner_lrs(lr_kind, SHAPES)

    out, got = vjp(iu.fused_inner_update, params, grads, lr)
    ref, expected = vjp(iu.inner_update_reference, params, grads, lr)

    for name in SHAPES:  # same operations in the same order: bitwise the reference
        assert torch.equal(out[name], ref[name]), name
    assert_close_all(got, expected, rtol=1e-5, atol=1e-5)
    forward, backward = launches
    assert len(forward.grids) == 1 and len(backward.grids) == 1  # all tensors in one launch each
    # ⌈n / 1024⌉ programs per tensor: 1 + 1 + 2 + 1 + 3
    assert forward.grids[0] == (8,)


@needs_interpreter_or_cuda
def test_theta_per_task_and_alpha_per_task():
    """θ and α with the task dimension too (the layouts ``vmap`` produces for batched inputs)."""
    shapes = {"w": (2, 1030), "b": (3,)}
    params = make(shapes, tasks=4)
    grads = make(shapes, tasks=4, seed=5)
    lr = make(shapes, tasks=4, seed=6, positive=True)
    lr["b"] = torch.rand(4, 1, dtype=torch.float32).requires_grad_()  # one number per task
    out, got = vjp(iu.fused_inner_update, params, grads, lr)
    ref, expected = vjp(iu.inner_update_reference, params, grads, lr)
    for name in shapes:
        assert torch.equal(out[name], ref[name])
    assert_close_all(got, expected, rtol=1e-5, atol=1e-5)


@needs_interpreter_or_cuda
def test_one_learned_alpha_shared_by_all_parameters():
    params, grads = make(SHAPES), make(SHAPES, tasks=2, seed=7)
    alpha = torch.tensor(0.1, requires_grad=True)
    lr = dict.fromkeys(SHAPES, alpha)
    (d_fused,) = torch.autograd.grad(
        sum(v.sum() for v in iu.fused_inner_update(params, grads, lr).values()), alpha
    )
    (d_ref,) = torch.autograd.grad(
        sum(v.sum() for v in iu.inner_update_reference(params, grads, lr).values()), alpha
    )
    torch.testing.assert_close(d_fused, d_ref, rtol=1e-5, atol=1e-4)


@needs_interpreter_or_cuda
def test_first_order_backward_is_dtheta_itself_without_a_launch(launches):
    """g constant (first-order MAML) and α a number: dθ = dθ', nothing for a kernel to do."""
    params = make({"w": (3, 4)})
    grads = make({"w": (3, 4)}, seed=17, requires_grad=False)
    out = iu.fused_inner_update(params, grads, 0.3)["w"]
    cotangent = torch.randn(3, 4)
    (dtheta,) = torch.autograd.grad(out, params["w"], cotangent)
    assert torch.equal(dtheta, cotangent)
    forward, backward = launches
    assert len(forward.grids) == 1 and not backward.grids


@needs_interpreter_or_cuda
def test_gradcheck_and_gradgradcheck_in_float64():
    """Against finite differences; the second check covers the backward's own backward."""
    theta = torch.randn(3, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)  # two tasks, θ shared
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def f(theta, grad, alpha):
        return iu.fused_inner_update({"w": theta}, {"w": grad}, {"w": alpha})["w"]

    assert torch.autograd.gradcheck(f, (theta, grad, alpha), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (theta, grad, alpha), fast_mode=True)


@needs_interpreter_or_cuda
def test_dtypes_are_launched_separately_and_uncovered_patterns_fall_back():
    params = {"a": torch.randn(5, 3), "h": torch.randn(7, dtype=torch.float64)}
    params["odd"] = torch.randn(3, 1)  # g broadcast to (3, 4): θ is neither per task nor shared
    grads = {"a": torch.randn(5, 3), "h": torch.randn(7, dtype=torch.float64)}
    grads["odd"] = torch.randn(3, 4)
    for p in (*params.values(), *grads.values()):
        p.requires_grad_()
    out, got = vjp(iu.fused_inner_update, params, grads, 0.2)
    ref, expected = vjp(iu.inner_update_reference, params, grads, 0.2)
    for name in params:
        assert torch.equal(out[name], ref[name])
        assert out[name].dtype == ref[name].dtype
    assert_close_all(got, expected)


@needs_interpreter_or_cuda
def test_parameters_without_gradient_pass_through_and_empty_grads():
    params = make({"body": (3, 3), "head": (2, 3)})
    grads = {"head": torch.randn(2, 3)}
    out = iu.fused_inner_update(params, grads, 0.5)
    assert out["body"] is params["body"]
    assert torch.equal(out["head"], params["head"] - 0.5 * grads["head"])
    assert iu.fused_inner_update(params, {}, 0.5) == params


# --- layouts and the bytes the kernels move -----------------------------------------------------


@pytest.mark.parametrize(
    ("out", "theta", "alpha", "expected"),
    [
        ((4, 6), (4, 6), (), iu.Layout(1, 24, 24, (0, 0), (0, 0))),  # one task: a flat tensor
        ((8, 4, 6), (4, 6), (4, 6), iu.Layout(8, 24, 0, (0, 1), (0, 1))),  # MAML over 8 tasks
        ((8, 4, 6), (8, 4, 6), (8, 1, 1), iu.Layout(8, 24, 24, (1, 0), (1, 0))),  # α per task
        ((8, 5), (5,), (8, 5), iu.Layout(8, 5, 0, (5, 1), (5, 1))),
        ((3, 4), (3, 1), (), None),  # θ broadcast along its own last dimension
        ((2, 3, 4), (1, 3, 4), (2, 1, 4), None),
    ],
)
def test_layout(out, theta, alpha, expected):
    assert iu.layout(out, theta, alpha) == expected


def test_bytes_moved_counts_each_operand_once():
    # MAML, θ shared by 32 tasks, n = 1000 float32 entries: θ, α once; g and θ' per task
    b = iu.bytes_moved(32, 1000, 4, theta_shared=True, alpha="scalar")
    assert b["forward"] == 4 * (1000 + 2 * 32_000 + 1)
    assert b["backward"] == 4 * (2 * 32_000 + 1 + 1000)  # read dθ', write dg and dθ = Σ dθ'
    c = iu.bytes_moved(1, 10, 8, theta_shared=False, alpha="entry", alpha_grad=True)
    assert c == {"forward": 8 * 40, "backward": 8 * (20 + 10 + 10 + 10)}
    with pytest.raises(ValueError, match="alpha"):
        iu.bytes_moved(1, 10, 4, theta_shared=False, alpha="per_layer")


# --- torch.func: vmap over tasks is one launch --------------------------------------------------


@needs_interpreter_or_cuda
def test_vmap_over_tasks_is_one_launch_and_matches_reference(launches):
    shapes = {"w": (3, 5), "b": (1030,)}
    params = make(shapes, requires_grad=False)
    grads = make(shapes, tasks=6, seed=10, requires_grad=False)
    lr = make(shapes, seed=11, positive=True, requires_grad=False)

    def per_task(update, g):
        return update(params, g, lr)

    got = torch.func.vmap(functools.partial(per_task, iu.fused_inner_update))(grads)
    expected = torch.func.vmap(functools.partial(per_task, iu.inner_update_reference))(grads)
    for name in shapes:
        assert torch.equal(got[name], expected[name])
    forward, _ = launches
    assert len(forward.grids) == 1  # the vmap rule launched once for the six tasks


@needs_interpreter_or_cuda
def test_vmap_of_an_update_with_its_own_task_dimension_falls_back_correctly():
    """vmap around a call that already has tasks: θ shared by tasks inside each batch member is
    a pattern the kernel does not cover; the result and gradients are still the reference's."""
    shapes = {"w": (3, 2)}
    params = make(shapes, tasks=2, dtype=torch.float64)  # (batch, 3, 2): batched by vmap
    grads = make(shapes, tasks=2, dtype=torch.float64, seed=12)
    grads = {"w": grads["w"].detach().unsqueeze(1).repeat(1, 4, 1, 1).requires_grad_()}
    lr = {"w": torch.rand(3, 2, dtype=torch.float64).requires_grad_()}

    def batched(update):
        def one(p, g):
            return update({"w": p}, {"w": g}, lr)["w"]

        out = torch.func.vmap(one)(params["w"], grads["w"])
        return torch.autograd.grad((out**2).sum(), [params["w"], grads["w"], lr["w"]])

    assert_close_all(batched(iu.fused_inner_update), batched(iu.inner_update_reference))


def _forced_kernel(monkeypatch):
    """Make the inner loop take the kernel on CPU tensors too (interpreted)."""
    sgd_step = inner_loop.sgd_step
    monkeypatch.setattr(
        inner_loop,
        "sgd_step",
        lambda params, grads, lr, use_triton=None: sgd_step(params, grads, lr, use_triton=True),
    )


@needs_interpreter_or_cuda
@pytest.mark.parametrize("algorithm", [MAML, MetaSGD, ANIL])
@pytest.mark.parametrize("execution", ["loop", "functional", "vmap"])
def test_maml_meta_gradient_with_the_kernel_equals_the_reference(
    algorithm, execution, monkeypatch, launches
):
    """Second order, 2 inner steps, float64: the inner gradients carry graphs into the update."""
    model = MLP((1, 8, 8, 1), init_scheme="xavier")
    episode = regression_episode(tasks=4, seed=3)
    alg = algorithm(model, 0.2, 2, False, execution=execution)
    meta_params = float64(alg.init_meta_params(torch.Generator().manual_seed(3)))

    expected, _ = alg.meta_gradient(meta_params, episode)
    assert not launches[0].grids  # on the CPU the inner loop runs PyTorch by default
    _forced_kernel(monkeypatch)
    got, _ = alg.meta_gradient(meta_params, episode)

    forward, backward = launches
    steps = 2 if execution == "vmap" else 2 * episode.num_tasks  # vmap: all tasks per launch
    assert len(forward.grids) == steps and len(backward.grids) == steps
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12)
    assert max(g.abs().max() for g in got.values()) > 1e-3


@needs_interpreter_or_cuda
def test_meta_sgd_on_conv4_under_vmap_with_the_kernel_equals_the_reference(monkeypatch):
    """Convolutions, batch norm and a head: 18 parameter tensors of 4 shapes per launch."""
    model = Conv4(ways=3, image_size=16, hidden=4)
    episode = classification_episode(tasks=2, image_size=16, seed=4)
    alg = MetaSGD(model, 0.4, 1, False, execution="vmap")
    meta_params = float64(alg.init_meta_params(torch.Generator().manual_seed(4)))
    expected, _ = alg.meta_gradient(meta_params, episode)
    _forced_kernel(monkeypatch)
    got, _ = alg.meta_gradient(meta_params, episode)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12)


# --- when the kernel runs -----------------------------------------------------------------------


def test_opt_out_and_explicit_choices(monkeypatch, launches):
    params, grads = make({"w": (4,)}), make({"w": (4,)}, seed=13)
    forward, _ = launches

    monkeypatch.setenv(ENV_SWITCH, "0")
    iu.inner_update(params, grads, 0.1)
    assert not forward.grids
    with pytest.raises(RuntimeError, match=f"{ENV_SWITCH}=0"):
        iu.inner_update(params, grads, 0.1, use_triton=True)
    with pytest.raises(RuntimeError, match=f"{ENV_SWITCH}=0"):
        inner_loop.sgd_step(params, grads, 0.1, use_triton=True)

    monkeypatch.setenv(ENV_SWITCH, "1")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        iu.fused_inner_update(params, grads, 0.1)
    out = iu.inner_update(params, grads, 0.1)  # automatic: the reference on a CPU
    assert torch.equal(out["w"], params["w"] - 0.1 * grads["w"])
    assert not forward.grids


@needs_interpreter_or_cuda
def test_inner_loop_uses_the_kernel_only_when_asked_on_the_cpu(monkeypatch, launches):
    params, grads = make({"w": (4,)}), make({"w": (4,)}, seed=14)
    forward, _ = launches
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    expected = iu.inner_update_reference(params, grads, 0.1)["w"]
    assert torch.equal(inner_loop.sgd_step(params, grads, 0.1)["w"], expected)
    assert torch.equal(inner_loop.sgd_step(params, grads, 0.1, use_triton=False)["w"], expected)
    assert not forward.grids  # automatic use is for CUDA tensors
    assert torch.equal(inner_loop.sgd_step(params, grads, 0.1, use_triton=True)["w"], expected)
    assert len(forward.grids) == 1
    assert torch.equal(iu.inner_update(params, grads, 0.1)["w"], expected)  # kernel policy:
    assert len(forward.grids) == 1  # the interpreter is never chosen automatically
    assert torch.equal(iu.inner_update(params, grads, 0.1, use_triton=True)["w"], expected)
    assert len(forward.grids) == 2


# --- on a GPU ---------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cuda_kernel_matches_reference(dtype):
    device = torch.device("cuda")
    shapes = {"conv": (64, 64, 3, 3), "b": (64,), "fc": (5, 1600), "odd": (100_003,)}
    params = {n: p.to(device) for n, p in make(shapes, dtype=dtype).items()}
    grads = {n: p.to(device) for n, p in make(shapes, tasks=8, dtype=dtype, seed=15).items()}
    lr = {n: p.to(device) for n, p in make(shapes, dtype=dtype, seed=16, positive=True).items()}
    for p in (*params.values(), *grads.values(), *lr.values()):
        p.detach_().requires_grad_()
    out, got = vjp(iu.fused_inner_update, params, grads, lr)
    ref, expected = vjp(iu.inner_update_reference, params, grads, lr)
    for name in shapes:  # no fused multiply-add: bitwise the reference
        assert torch.equal(out[name], ref[name]), name
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
    assert_close_all(got, expected, **tol)


@cuda
def test_cuda_inner_loop_uses_the_kernel_by_default_with_opt_out(monkeypatch, launches):
    device = torch.device("cuda")
    params = {"w": torch.randn(3, 1000, device=device)}
    grads = {"w": torch.randn(3, 1000, device=device)}
    forward, _ = launches
    inner_loop.sgd_step(params, grads, 0.1)
    assert len(forward.grids) == 1
    monkeypatch.setenv(ENV_SWITCH, "0")
    inner_loop.sgd_step(params, grads, 0.1)
    inner_loop.sgd_step(params, grads, 0.1, use_triton=None)
    assert len(forward.grids) == 1


def test_reference_only_keeps_compiled_code_away_from_the_kernels(monkeypatch):
    """torch.compile traces MAML's compiled execution inside reference_only(): there use_triton
    picks PyTorch unless the kernel is asked for explicitly (on an H200 a kernel met after a graph
    break failed inside Dynamo)."""
    from metalearn_edu.algorithms import MAML
    from metalearn_edu.algorithms import maml as maml_module
    from metalearn_edu.kernels import _dispatch
    from metalearn_edu.models import sinusoid_mlp
    from metalearn_edu.tasks.sinusoid import SinusoidTasks

    x = torch.zeros(2)
    assert _dispatch._reference_only_depth == 0
    with _dispatch.reference_only():
        with _dispatch.reference_only():
            assert _dispatch._reference_only_depth == 2
        assert not _dispatch.use_triton(x, use_triton=None)
        assert _dispatch.use_triton(x, use_triton=True)  # interpreted here: still asked for
    assert _dispatch._reference_only_depth == 0
    monkeypatch.setattr(_dispatch, "_why_not", lambda tensors: None)  # as if on a GPU
    monkeypatch.setattr(_dispatch, "_reference_only_depth", 0)
    cuda_like = torch.zeros(2, device="meta")
    monkeypatch.setattr(type(cuda_like), "device", property(lambda t: torch.device("cuda")))
    assert _dispatch.use_triton(cuda_like)
    with _dispatch.reference_only():
        assert not _dispatch.use_triton(cuda_like)
    monkeypatch.undo()

    seen = []
    algorithm = MAML(sinusoid_mlp(), inner_lr=0.01, execution="compiled")

    def fake_compiled(params, *tensors):
        seen.append(_dispatch._reference_only_depth)
        return maml_module.meta_gradient_step(algorithm)(params, *tensors)

    algorithm._compiled = fake_compiled
    episode = SinusoidTasks().sample(2, generator=torch.Generator().manual_seed(0))
    algorithm.meta_gradient(algorithm.init_meta_params(), episode)
    assert seen == [1] and _dispatch._reference_only_depth == 0
