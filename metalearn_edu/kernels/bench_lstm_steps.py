"""GPU benchmarks of the two fused LSTM-step kernels, for :mod:`metalearn_edu.kernels.bench`.

Each function takes the run's context (``device``, ``copy_gbs``, ``quick`` and ``time(fn)``: the
CUDA-event median after warm-up) and returns one record per coordinate count and pass (forward;
forward and backward), with the fields :func:`~metalearn_edu.kernels.bench.summarize` expects:
the kernel, eager PyTorch (the library's reference step) and ``torch.compile`` of that reference,
timed on the same inputs after a check that the kernel agrees with the reference on the card.

Bytes moved (compulsory traffic, float32, ``N`` coordinates, ``H`` hidden units; the shared
weights, a few kB, are left out):

- LSTM optimizer, forward: read ∇ and both layers' ``(h, c)``, write the update and the new
  state: ``4 (N + 4NH) + 4 (N + 4NH)`` bytes, 648 per coordinate for H = 20. Backward: read the
  inputs again and the five output gradients, write the five input gradients: ``3 · 4 (N + 4NH)``.
- Meta-LSTM, forward: read ∇, f, i, θ and ``(h, c)``, write the new f, i, θ, ``(h, c)``:
  ``4 (4N + 2NH) + 4 (3N + 2NH)``, 348 per coordinate for H = 20. Backward: read the inputs and
  the five output gradients, write the six input gradients: ``4 (4N + 2NH) + 4 (3N + 2NH) +
  4 (4N + 2NH)``.

The backward pass also writes and re-reads its per-program partial sums of the weight gradients
(``programs × #weights`` floats, under 10 MB): counted in the time, not in the bytes.

FLOPs (the multiply-adds of the gate products, 2 per multiply-add, unpadded): the LSTM optimizer
does ``2 · 4H (2 + H) + 2 · 4H · 2H`` per coordinate forward (9,920 for H = 20), so at float32
FMA rates it is near the ridge point of an H100/H200-class card; the Meta-LSTM does
``2 · 4H (4 + H)`` (3,840).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Record = dict[str, Any]
SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (100_000, 1_000_000)
HIDDEN = 20


def lstm_optimizer_bytes(n: int, hidden: int = HIDDEN, *, backward: bool) -> int:
    """Compulsory bytes of the fused LSTM-optimizer step (forward, or forward and backward)."""
    per_pass = 4 * (n + 4 * n * hidden)  # ∇ (or the update) and four [N, H] states
    return (2 + (3 if backward else 0)) * per_pass


def meta_lstm_bytes(n: int, hidden: int = HIDDEN, *, backward: bool) -> int:
    """Compulsory bytes of the fused Meta-LSTM step (forward, or forward and backward)."""
    inputs = 4 * (4 * n + 2 * n * hidden)  # ∇, f, i, θ and (h, c)
    outputs = 4 * (3 * n + 2 * n * hidden)  # f, i, θ and (h, c)
    return inputs + outputs + ((inputs + outputs + inputs) if backward else 0)


def lstm_optimizer_flops(n: int, hidden: int = HIDDEN, *, backward: bool) -> int:
    """FLOPs of the gate products (the backward pass does about twice the forward's)."""
    forward = 2 * 4 * hidden * (2 + hidden) + 2 * 4 * hidden * 2 * hidden
    return n * forward * (3 if backward else 1)


def meta_lstm_flops(n: int, hidden: int = HIDDEN, *, backward: bool) -> int:
    """FLOPs of the gate products (the backward pass does about twice the forward's)."""
    return n * 2 * 4 * hidden * (4 + hidden) * (3 if backward else 1)


def _sizes(ctx: Any, sizes: tuple[int, ...] | None) -> tuple[int, ...]:
    if sizes is not None:
        return sizes
    return QUICK_SIZES if ctx.quick else SIZES


def _summarize(record: Record, copy_gbs: float) -> Record:
    from metalearn_edu.kernels.bench import summarize

    return summarize(record, copy_gbs)


def _check(name: str, got: list[Tensor], expected: list[Tensor], *, rtol: float) -> None:
    """Stop the run if the kernel disagrees with the reference on the card."""
    for k, (a, b) in enumerate(zip(got, expected, strict=True)):
        scale = b.abs().max().item()
        try:
            torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale + 1e-12)
        except AssertionError as error:
            raise AssertionError(
                f"{name}: output {k} differs from the reference: {error}"
            ) from None


def _time_passes(
    ctx: Any,
    kernel: str,
    n: int,
    run: Callable[[Callable[..., Any], bool], Callable[[], Any]],
    step: dict[str, Callable[..., Any]],
    bytes_fn: Callable[..., int],
    flops_fn: Callable[..., int],
) -> list[Record]:
    records = []
    for backward in (False, True):
        record: Record = {
            "kernel": kernel,
            "case": f"N={n:.0e}",
            "pass": "forward+backward" if backward else "forward",
            "coordinates": n,
            "hidden": HIDDEN,
            "dtype": "float32",
            "bytes": bytes_fn(n, backward=backward),
            "flops": flops_fn(n, backward=backward),
        }
        for label, fn in step.items():
            record[f"{label}_ms"] = ctx.time(run(fn, backward))
        records.append(_summarize(record, ctx.copy_gbs))
    return records


def bench_lstm_optimizer_step(
    ctx: Any, sizes: tuple[int, ...] | None = None, *, compile: bool = True
) -> list[Record]:
    """The coordinate-wise LSTM optimizer step (Andrychowicz eq. 1, two layers of 20) at
    1e5 .. 1e7 coordinates: kernel, eager reference, compiled reference."""
    from metalearn_edu.kernels.lstm_optimizer_step import (
        lstm_optimizer_step_reference,
        lstm_optimizer_step_triton,
    )
    from metalearn_edu.learned_optimizers import LSTMOptimizer

    optimizer = LSTMOptimizer(hidden=HIDDEN)
    params = {
        k: v.to(ctx.device).requires_grad_()
        for k, v in optimizer.init(torch.Generator().manual_seed(0)).items()
    }
    step: dict[str, Callable[..., Any]] = {
        "triton": lstm_optimizer_step_triton,
        "eager": lstm_optimizer_step_reference,
    }
    if compile:
        step["compiled"] = torch.compile(lstm_optimizer_step_reference, fullgraph=True)
    records = []
    for n in _sizes(ctx, sizes):
        records += _bench_lstm_optimizer_size(ctx, optimizer, params, step, n)
    return records


def _bench_lstm_optimizer_size(
    ctx: Any, optimizer: Any, params: dict[str, Tensor], step: dict[str, Callable[..., Any]], n: int
) -> list[Record]:
    from metalearn_edu.kernels.lstm_optimizer_step import (
        lstm_optimizer_step_reference,
        lstm_optimizer_step_triton,
    )

    g = torch.Generator(device=ctx.device).manual_seed(n)
    grad = torch.randn(n, device=ctx.device, generator=g) * 1e-2
    state = [
        tuple(
            (0.5 * torch.randn(n, HIDDEN, device=ctx.device, generator=g)).requires_grad_()
            for _ in range(2)
        )
        for _ in range(2)
    ]
    inputs = [*params.values(), *(t for pair in state for t in pair)]

    def outputs(fn: Callable[..., Any]) -> list[Tensor]:
        update, new_state = fn(optimizer, params, grad, state)
        return [update, *(t for pair in new_state for t in pair)]

    return _check_and_time(
        ctx,
        "lstm_optimizer_step",
        n,
        outputs,
        inputs,
        (lstm_optimizer_step_triton, lstm_optimizer_step_reference),
        step,
        (lstm_optimizer_bytes, lstm_optimizer_flops),
    )


def bench_meta_lstm_step(
    ctx: Any, sizes: tuple[int, ...] | None = None, *, compile: bool = True
) -> list[Record]:
    """The Meta-LSTM meta-learner step (Ravi & Larochelle eq. 2, 20 hidden units) at
    1e5 .. 1e7 learner coordinates: kernel, eager reference, compiled reference."""
    from metalearn_edu.kernels.meta_lstm_step import meta_lstm_step_reference, meta_lstm_step_triton
    from metalearn_edu.meta_lstm import init_meta_learner

    g = torch.Generator().manual_seed(0)
    params = {
        k: (0.1 * torch.randn(v.shape, generator=g)).to(ctx.device).requires_grad_()
        for k, v in init_meta_learner(HIDDEN, g).items()
    }
    step: dict[str, Callable[..., Any]] = {
        "triton": meta_lstm_step_triton,
        "eager": meta_lstm_step_reference,
    }
    if compile:
        step["compiled"] = torch.compile(meta_lstm_step_reference, fullgraph=True)
    records = []
    for n in _sizes(ctx, sizes):
        records += _bench_meta_lstm_size(ctx, params, step, n)
    return records


def _bench_meta_lstm_size(
    ctx: Any, params: dict[str, Tensor], step: dict[str, Callable[..., Any]], n: int
) -> list[Record]:
    from metalearn_edu.kernels.meta_lstm_step import meta_lstm_step_reference, meta_lstm_step_triton
    from metalearn_edu.meta_lstm import MetaLearnerState

    gen = torch.Generator(device=ctx.device).manual_seed(n)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, device=ctx.device, generator=gen)

    state = MetaLearnerState(
        *(t.requires_grad_() for t in (rand(n, HIDDEN), rand(n, HIDDEN), rand(n), rand(n), rand(n)))
    )
    loss = torch.tensor(1.3, device=ctx.device)
    grad = rand(n) * 1e-2
    inputs = [*params.values(), *state]

    def outputs(fn: Callable[..., Any]) -> list[Tensor]:
        return list(fn(params, state, loss, grad))

    return _check_and_time(
        ctx,
        "meta_lstm_step",
        n,
        outputs,
        inputs,
        (meta_lstm_step_triton, meta_lstm_step_reference),
        step,
        (meta_lstm_bytes, meta_lstm_flops),
    )


def _check_and_time(
    ctx: Any,
    name: str,
    n: int,
    outputs: Callable[[Callable[..., Any]], list[Tensor]],
    inputs: list[Tensor],
    kernel_and_reference: tuple[Callable[..., Any], Callable[..., Any]],
    step: dict[str, Callable[..., Any]],
    bytes_and_flops: tuple[Callable[..., Any], Callable[..., Any]],
) -> list[Record]:
    """Check the kernel against its reference, forward and backward (random cotangents), then time
    every variant in ``step``; ``outputs(fn)`` runs one step with ``fn`` and lists its outputs."""
    kernel, reference = kernel_and_reference
    cotangents = [torch.randn_like(t) for t in outputs(reference)]

    def run(fn: Callable[..., Any], backward: bool) -> Callable[[], Any]:
        def call() -> Any:
            if not backward:
                with torch.no_grad():
                    return outputs(fn)
            return torch.autograd.grad(outputs(fn), inputs, cotangents)

        return call

    for backward in (False, True):
        _check(f"{name} N={n}", list(run(kernel, backward)()), list(run(reference, backward)()),
               rtol=1e-4)  # fmt: skip
    return _time_passes(ctx, name, n, run, step, *bytes_and_flops)
