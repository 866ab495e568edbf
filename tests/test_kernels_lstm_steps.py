"""The fused LSTM-step kernels against their references, the library's own functions.

Without a GPU the kernels run in Triton's interpreter (the root conftest sets TRITON_INTERPRET=1
for the session); with one, the same tests run them compiled. Each compares the forward pass and
the gradient w.r.t. every tensor input (gradient, states, all weights) with the reference, in
float32, on coordinate counts that are not multiples of the block, with zero, tiny and huge
gradients for both branches of the log/sign preprocessing, and over several chained steps.
"""

from __future__ import annotations

import pytest
import torch

from metalearn_edu.kernels import interpreting, triton_available
from metalearn_edu.kernels import lstm_optimizer_step as lstm_kernel
from metalearn_edu.kernels import meta_lstm_step as meta_kernel
from metalearn_edu.learned_optimizers import LSTMOptimizer
from metalearn_edu.meta_lstm import MetaLearnerState, init_meta_learner, initial_state
from metalearn_edu.meta_lstm import meta_learner_step as meta_step

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not triton_available() or not (CUDA or interpreting()),
    reason="needs triton, and a GPU or TRITON_INTERPRET=1",
)
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")

# float32: the kernel and the reference add the same terms in different orders
FORWARD_TOL = {"rtol": 1e-5, "atol": 2e-6}
BACKWARD_RTOL = 1e-4  # of each gradient tensor's largest entry (sums over all coordinates)
SPECIAL = torch.tensor([0.0, 1e-30, -1e-30, 1e30, -1e30, 4e-5, -4e-5, 1e-4])  # both branches


def _gradient(n: int, seed: int) -> torch.Tensor:
    """Gradient entries spanning 10 orders of magnitude, led by zero, tiny and huge values."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-8, 2, n)[torch.randperm(n, generator=g)]
    grad = torch.randn(n, generator=g) * scale
    grad[: len(SPECIAL)] = SPECIAL[:n]
    return grad.to(DEVICE)


def _random_like(tensors: list[torch.Tensor], seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(t.shape, generator=g)).to(DEVICE) for t in tensors]


def _assert_gradients_close(actual: tuple, expected: tuple, names: list[str]) -> None:
    for name, a, e in zip(names, actual, expected, strict=True):
        assert a is not None and torch.isfinite(a).all(), name
        scale = e.abs().max().item()
        torch.testing.assert_close(
            a,
            e,
            rtol=BACKWARD_RTOL,
            atol=BACKWARD_RTOL * scale + 1e-12,
            msg=lambda m, name=name: f"d/d {name}: {m}",
        )


# ------------------------------------------------------------------------------------------------
# The coordinate-wise LSTM optimizer (Andrychowicz et al. 2016)
# ------------------------------------------------------------------------------------------------


def _optimizer_case(hidden: int, p: float | None, n: int, seed: int = 0):
    optimizer = LSTMOptimizer(hidden=hidden, p=p)
    params = {
        name: (t + 0.3 * torch.randn(t.shape, generator=torch.Generator().manual_seed(seed)))
        .to(DEVICE)
        .requires_grad_()
        for name, t in optimizer.init(torch.Generator().manual_seed(seed)).items()
    }
    grad = (_gradient(n, seed) if p is not None else torch.randn(n).to(DEVICE)).requires_grad_()
    state = [
        tuple(t.requires_grad_() for t in _random_like([torch.empty(n, hidden)] * 2, seed + k))
        for k in (1, 2)
    ]
    return optimizer, params, grad, state


def _optimizer_outputs(update, state):
    return [update, *(t for pair in state for t in pair)]


# hidden 20 (the paper) with the default blocks and the log/sign input; a small hidden size with
# 16-row blocks, several blocks per backward program, and the raw input (p=None)
OPTIMIZER_CASES = [
    pytest.param(20, 10.0, 100, {}, id="hidden20-p10-n100"),
    pytest.param(20, 5.0, 45, {"block": 16, "backward_block": 16, "programs": 2}, id="p5-n45"),
    pytest.param(3, None, 37, {"block": 16, "backward_block": 16, "programs": 2}, id="raw-n37"),
]


@pytest.mark.parametrize(("hidden", "p", "n", "options"), OPTIMIZER_CASES)
def test_lstm_optimizer_step_matches_the_reference(hidden, p, n, options):
    optimizer, params, grad, state = _optimizer_case(hidden, p, n)
    fused = _optimizer_outputs(
        *lstm_kernel.lstm_optimizer_step_triton(optimizer, params, grad, state, **options)
    )
    reference = _optimizer_outputs(
        *lstm_kernel.lstm_optimizer_step_reference(optimizer, params, grad, state)
    )
    for a, e in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, e, **FORWARD_TOL)

    weights = _random_like(reference, seed=7)
    inputs = [grad, *(t for pair in state for t in pair), *params.values()]
    names = ["grad", "h1", "c1", "h2", "c2", *params]
    fused_grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(fused, weights, strict=True)), inputs
    )
    reference_grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(reference, weights, strict=True)), inputs
    )
    _assert_gradients_close(fused_grads, reference_grads, names)
    if p is not None:  # both preprocessing branches, entry by entry (the huge ones are ~1e-31)
        special = slice(0, len(SPECIAL))
        torch.testing.assert_close(
            fused_grads[0][special], reference_grads[0][special], rtol=1e-4, atol=0.0
        )


def test_lstm_optimizer_gradients_through_chained_steps_and_unused_outputs():
    """Three steps θ ← θ + g_t with the same loss as the meta-objective's (Σ_t f(θ_t), a
    quadratic f): gradients flow through both layers' recurrent states, and the last step's
    state is unused (its gradients arrive as None)."""
    optimizer, params, _, state = _optimizer_case(20, 10.0, 50, seed=3)
    theta0 = torch.randn(50, generator=torch.Generator().manual_seed(4)).to(DEVICE)

    def meta_loss(use_triton: bool) -> torch.Tensor:
        theta, current, total = theta0, state, 0.0
        for _ in range(3):
            grad = (2 * theta).detach()  # ∇ of ‖θ‖², a constant as in the paper
            update, current = optimizer.step(params, grad, current, use_triton=use_triton)
            theta = theta + update
            total = total + (theta**2).sum()
        return total

    fused, reference = meta_loss(True), meta_loss(False)
    torch.testing.assert_close(fused, reference, **FORWARD_TOL)
    inputs = [*params.values(), *(t for pair in state for t in pair)]
    _assert_gradients_close(
        torch.autograd.grad(fused, inputs),
        torch.autograd.grad(reference, inputs),
        [*params, "h1", "c1", "h2", "c2"],
    )


def test_lstm_optimizer_backward_is_deterministic():
    optimizer, params, grad, state = _optimizer_case(20, 10.0, 100, seed=5)
    update, _ = lstm_kernel.lstm_optimizer_step_triton(optimizer, params, grad, state)
    first = torch.autograd.grad(update.sum(), list(params.values()), retain_graph=True)
    second = torch.autograd.grad(update.sum(), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_lstm_optimizer_dispatch_and_opt_out(monkeypatch):
    optimizer, params, grad, state = _optimizer_case(3, 10.0, 5)
    calls = []
    kernel = lstm_kernel.lstm_optimizer_step_triton

    def spy(*args, **kwargs):
        calls.append(args[2].device.type)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(lstm_kernel, "lstm_optimizer_step_triton", spy)
    forced, _ = optimizer.step(params, grad, state, use_triton=True)
    assert calls == [DEVICE]
    plain, _ = optimizer.step(params, grad, state, use_triton=False)
    assert len(calls) == 1
    torch.testing.assert_close(forced, plain, **FORWARD_TOL)

    automatic, _ = optimizer.step(params, grad, state)  # the kernel on a GPU only
    assert len(calls) == (2 if CUDA else 1)
    torch.testing.assert_close(automatic, plain, **FORWARD_TOL)

    # the reference where the kernel does not apply; an error where it is asked for
    as_double = {n: t.double() for n, t in params.items()}
    double_state = [(h.double(), c.double()) for h, c in state]
    optimizer.step(as_double, grad.double(), double_state)
    with pytest.raises(RuntimeError, match="float32"):
        optimizer.step(as_double, grad.double(), double_state, use_triton=True)
    three = LSTMOptimizer(hidden=3, layers=3)
    three_params = {n: t.to(DEVICE) for n, t in three.init().items()}
    three_state = three.initial_state(5, grad)
    three.step(three_params, grad, three_state)
    with pytest.raises(RuntimeError, match="two layers"):
        three.step(three_params, grad, three_state, use_triton=True)
    monkeypatch.setenv("METALEARN_EDU_TRITON", "0")
    optimizer.step(params, grad, state)
    with pytest.raises(RuntimeError, match="METALEARN_EDU_TRITON=0"):
        optimizer.step(params, grad, state, use_triton=True)
    assert len(calls) == (2 if CUDA else 1)


# ------------------------------------------------------------------------------------------------
# The Meta-LSTM meta-learner (Ravi & Larochelle 2017)
# ------------------------------------------------------------------------------------------------


def _meta_case(hidden: int, n: int, seed: int = 0):
    """Weights wider than the official U(±0.01) initialisation (whose gates barely move), and a
    random state, so every term of the step matters."""
    g = torch.Generator().manual_seed(seed)
    params = {
        name: (0.5 * torch.randn(t.shape, generator=g)).to(DEVICE).requires_grad_()
        for name, t in init_meta_learner(hidden, g).items()
    }
    state = MetaLearnerState(
        *(
            t.requires_grad_()
            for t in _random_like(
                [torch.empty(n, hidden), torch.empty(n, hidden), *[torch.empty(n)] * 3], seed + 1
            )
        )
    )
    loss = torch.tensor(0.7, device=DEVICE, requires_grad=True)
    grad = _gradient(n, seed).requires_grad_()
    return params, state, loss, grad


META_CASES = [
    pytest.param(20, 100, {}, id="hidden20-n100"),
    pytest.param(20, 45, {"block": 16, "backward_block": 16, "programs": 2}, id="hidden20-n45"),
    pytest.param(3, 37, {"block": 16, "backward_block": 16, "programs": 2}, id="hidden3-n37"),
]


@pytest.mark.parametrize(("hidden", "n", "options"), META_CASES)
def test_meta_lstm_step_matches_the_reference(hidden, n, options):
    params, state, loss, grad = _meta_case(hidden, n)
    fused = meta_kernel.meta_lstm_step_triton(params, state, loss, grad, **options)
    reference = meta_kernel.meta_lstm_step_reference(params, state, loss, grad)
    for a, e in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, e, **FORWARD_TOL)

    weights = _random_like(list(reference), seed=7)
    inputs = [loss, grad, *state, *params.values()]
    names = ["loss", "grad", *MetaLearnerState._fields, *params]
    fused_grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(fused, weights, strict=True)), inputs
    )
    reference_grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(reference, weights, strict=True)), inputs
    )
    _assert_gradients_close(fused_grads, reference_grads, names)


@pytest.mark.parametrize("loss_value", [0.0, 1e-30, 1e30, 2.3])
def test_meta_lstm_loss_preprocessing_branches(loss_value):
    """The loss is one input for every coordinate: its gradient is a sum over all of them."""
    params, state, _, grad = _meta_case(20, 40, seed=2)
    loss = torch.tensor(loss_value, device=DEVICE, requires_grad=True)
    fused = meta_kernel.meta_lstm_step_triton(params, state, loss, grad)
    reference = meta_kernel.meta_lstm_step_reference(params, state, loss, grad)
    for a, e in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, e, **FORWARD_TOL)
    (fused_grad,) = torch.autograd.grad(fused.h.sum() + fused.theta.sum(), loss)
    (reference_grad,) = torch.autograd.grad(reference.h.sum() + reference.theta.sum(), loss)
    torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-4, atol=0.0)


def test_meta_lstm_chained_steps_as_in_an_episode():
    """Three steps with constant losses and gradients and the meta-loss on θ_3 only, as in
    MetaLSTM: gradients reach c_0 = θ_0 and the weights through h, c, f, i and θ."""
    params, state, _, _ = _meta_case(20, 60, seed=6)
    theta0 = state.theta.detach().requires_grad_()
    start = initial_state(theta0, 20)
    target = torch.randn(60, generator=torch.Generator().manual_seed(8)).to(DEVICE)

    def meta_loss(use_triton: bool) -> torch.Tensor:
        current = start
        for t in range(3):
            grad = (current.theta - target).detach()  # ∇ of ½‖θ − target‖², a constant
            loss = (0.5 * grad**2).sum().reshape(()) / (t + 1)
            current = meta_step(params, current, loss, grad, use_triton=use_triton)
        return ((current.theta - target) ** 2).sum()

    fused, reference = meta_loss(True), meta_loss(False)
    torch.testing.assert_close(fused, reference, **FORWARD_TOL)
    inputs = [theta0, *params.values()]
    _assert_gradients_close(
        torch.autograd.grad(fused, inputs),
        torch.autograd.grad(reference, inputs),
        ["theta0", *params],
    )


def test_meta_lstm_backward_is_deterministic():
    params, state, loss, grad = _meta_case(20, 100, seed=9)
    theta = meta_kernel.meta_lstm_step_triton(params, state, loss, grad).theta
    first = torch.autograd.grad(theta.sum(), list(params.values()), retain_graph=True)
    second = torch.autograd.grad(theta.sum(), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_meta_lstm_dispatch_and_opt_out(monkeypatch):
    params, state, loss, grad = _meta_case(3, 5)
    calls = []
    kernel = meta_kernel.meta_lstm_step_triton

    def spy(*args, **kwargs):
        calls.append(args[3].device.type)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(meta_kernel, "meta_lstm_step_triton", spy)
    forced = meta_step(params, state, loss, grad, use_triton=True)
    assert calls == [DEVICE]
    plain = meta_step(params, state, loss, grad, use_triton=False)
    automatic = meta_step(params, state, loss, grad)  # the kernel on a GPU only
    assert len(calls) == (2 if CUDA else 1)
    for a, b, c in zip(forced, plain, automatic, strict=True):
        torch.testing.assert_close(a, b, **FORWARD_TOL)
        torch.testing.assert_close(c, b, **FORWARD_TOL)

    as_double = {n: t.double() for n, t in params.items()}
    double_state = MetaLearnerState(*(t.double() for t in state))
    meta_step(as_double, double_state, loss.double(), grad.double())
    with pytest.raises(RuntimeError, match="float32"):
        meta_step(as_double, double_state, loss.double(), grad.double(), use_triton=True)
    monkeypatch.setenv("METALEARN_EDU_TRITON", "0")
    meta_step(params, state, loss, grad)
    with pytest.raises(RuntimeError, match="METALEARN_EDU_TRITON=0"):
        meta_step(params, state, loss, grad, use_triton=True)
    assert len(calls) == (2 if CUDA else 1)


# ------------------------------------------------------------------------------------------------
# On a GPU: paper-sized coordinate counts, compiled
# ------------------------------------------------------------------------------------------------


@gpu
def test_lstm_optimizer_kernel_on_a_gpu_at_scale():
    optimizer, params, grad, state = _optimizer_case(20, 10.0, 100_003)
    fused = _optimizer_outputs(*optimizer.step(params, grad, state))  # automatic: the kernel
    reference = _optimizer_outputs(*optimizer.step(params, grad, state, use_triton=False))
    for a, e in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, e, **FORWARD_TOL)
    inputs = list(params.values())
    _assert_gradients_close(
        torch.autograd.grad(sum(o.sum() for o in fused), inputs),
        torch.autograd.grad(sum(o.sum() for o in reference), inputs),
        list(params),
    )


@gpu
def test_meta_lstm_kernel_on_a_gpu_at_scale():
    params, state, loss, grad = _meta_case(20, 100_003)
    fused = meta_step(params, state, loss, grad)  # automatic: the kernel
    reference = meta_step(params, state, loss, grad, use_triton=False)
    for a, e in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, e, **FORWARD_TOL)
    inputs = list(params.values())
    _assert_gradients_close(
        torch.autograd.grad(fused.theta.sum() + fused.h.sum(), inputs),
        torch.autograd.grad(reference.theta.sum() + reference.h.sum(), inputs),
        list(params),
    )


# ------------------------------------------------------------------------------------------------
# The benchmark's accounting (the timings themselves need a GPU: metalearn_edu.kernels.bench)
# ------------------------------------------------------------------------------------------------


def test_bytes_moved_count_every_state_tensor_once_per_pass():
    from metalearn_edu.kernels.bench_lstm_steps import lstm_optimizer_bytes, meta_lstm_bytes

    n, hidden = 7, 20
    optimizer, params, grad, state = _optimizer_case(hidden, 10.0, n)
    update, new_state = lstm_kernel.lstm_optimizer_step_reference(optimizer, params, grad, state)
    inputs = [grad, *(t for pair in state for t in pair)]
    outputs = _optimizer_outputs(update, new_state)
    forward = sum(t.nbytes for t in inputs + outputs)
    assert lstm_optimizer_bytes(n, hidden, backward=False) == forward
    # backward: the inputs again, the outputs' gradients, the inputs' gradients
    assert lstm_optimizer_bytes(n, hidden, backward=True) == forward + forward + sum(
        t.nbytes for t in inputs
    )

    meta_params, meta_state, loss, meta_grad = _meta_case(hidden, n)
    new = meta_kernel.meta_lstm_step_reference(meta_params, meta_state, loss, meta_grad)
    meta_inputs = [meta_grad, *meta_state]
    forward = sum(t.nbytes for t in meta_inputs + list(new))
    assert meta_lstm_bytes(n, hidden, backward=False) == forward
    assert meta_lstm_bytes(n, hidden, backward=True) == 2 * forward + sum(
        t.nbytes for t in meta_inputs
    )


def test_the_benchmark_functions_check_and_time_both_kernels():
    """A smoke run on tiny sizes with a wall-clock stand-in for the CUDA-event timer."""
    import time

    pytest.importorskip("metalearn_edu.kernels.bench")  # the run that registers these

    from metalearn_edu.kernels.bench_lstm_steps import (
        bench_lstm_optimizer_step,
        bench_meta_lstm_step,
    )

    class Context:
        device = torch.device(DEVICE)
        copy_gbs = 1.0
        quick = True

        def time(self, fn):
            start = time.perf_counter()
            fn()
            return 1e3 * (time.perf_counter() - start)

    records = bench_lstm_optimizer_step(Context(), sizes=(20,), compile=False)
    records += bench_meta_lstm_step(Context(), sizes=(20,), compile=False)
    assert [(r["kernel"], r["pass"]) for r in records] == [
        ("lstm_optimizer_step", "forward"),
        ("lstm_optimizer_step", "forward+backward"),
        ("meta_lstm_step", "forward"),
        ("meta_lstm_step", "forward+backward"),
    ]
    for r in records:
        assert r["triton_ms"] > 0 and r["eager_ms"] > 0 and r["bytes"] > 0
        assert r["triton_gbs"] == pytest.approx(r["bytes"] / r["triton_ms"] / 1e6)
