"""``python -m metalearn_edu.kernels.bench``: every Triton kernel of :mod:`metalearn_edu.kernels`
timed on one CUDA GPU against eager PyTorch and ``torch.compile`` of its reference, in one run of
a few minutes (issue 7: GPU time is scarce, so one prepared script checks and times everything).

For each kernel and size the run

1. checks the kernel against its reference on the card (forward, and backward where there is
   one); a mismatch stops the run, so no number is kept for a wrong kernel;
2. times the kernel, the eager reference and the compiled reference with CUDA events: the median
   of ``repeats`` launches after ``warmup`` (the compiled reference is compiled during warm-up);
3. turns times into achieved bandwidth, *compulsory bytes / time* (each operand read or written
   once: a memory-bound kernel cannot beat it), and compares it with a device-to-device copy
   measured in the same run (the practical ceiling, about 80-90% of the datasheet figure).

Targets (issue 7) for each memory-bound kernel: at least 70% of the copy bandwidth at large
sizes, and at least 2x the compiled reference. Results go to
``data/benchmarks/kernels_<card>.json`` with a short Markdown table beside it.

Kernels join with :func:`register`: a function of a :class:`BenchContext` returning records
(dicts; see :func:`summarize` for the fields every record carries).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearn_edu import __version__

OUT_DIR = Path("data/benchmarks")
COPY_BYTES = 1 << 30  # 1 GiB copied: large enough to leave every cache behind
Record = dict[str, Any]


class NoGPUError(RuntimeError):
    """The benchmark measures CUDA kernels; there is no CUDA device here."""


def require_cuda() -> torch.device:
    """The CUDA device, or a :class:`NoGPUError` that says what to do instead."""
    if not torch.cuda.is_available():
        raise NoGPUError(
            "the kernel benchmark needs a CUDA GPU (none is visible to PyTorch here). On a CPU, "
            "the kernels are checked in Triton's interpreter instead: "
            "TRITON_INTERPRET=1 pytest tests/test_kernels_*.py"
        )
    return torch.device("cuda")


def cuda_median_ms(fn: Callable[[], Any], *, warmup: int = 10, repeats: int = 50) -> float:
    """Median time of ``fn()`` in milliseconds, from CUDA events around each call after warm-up."""
    require_cuda()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bandwidth_gbs(nbytes: int, ms: float) -> float:
    """Achieved bandwidth in GB/s (10⁹ bytes per second) for ``nbytes`` moved in ``ms``."""
    if ms <= 0:
        raise ValueError(f"a time must be positive, got {ms} ms.")
    return nbytes / (ms * 1e-3) / 1e9


def copy_bandwidth_gbs(
    device: torch.device, nbytes: int = COPY_BYTES, *, warmup: int = 5, repeats: int = 20
) -> float:
    """Bandwidth of a device-to-device copy of ``nbytes`` (read + write: 2 ``nbytes`` moved)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = cuda_median_ms(lambda: dst.copy_(src), warmup=warmup, repeats=repeats)
    return bandwidth_gbs(2 * nbytes, ms)


def summarize(record: Record, copy_gbs: float) -> Record:
    """Add the derived fields to a record that holds ``bytes`` and the medians ``triton_ms``,
    ``eager_ms`` and ``compiled_ms``: achieved bandwidths, their fraction of the copy's, and the
    speed-ups over eager and compiled PyTorch."""
    out = dict(record)
    out["triton_gbs"] = bandwidth_gbs(record["bytes"], record["triton_ms"])
    out["fraction_of_copy"] = out["triton_gbs"] / copy_gbs
    for other in ("eager", "compiled"):
        if record.get(f"{other}_ms") is not None:
            out[f"{other}_gbs"] = bandwidth_gbs(record["bytes"], record[f"{other}_ms"])
            out[f"speedup_vs_{other}"] = record[f"{other}_ms"] / record["triton_ms"]
    return out


@dataclass
class BenchContext:
    """What every registered benchmark gets: the device, the copy bandwidth measured at the
    start of the run, the timing settings, and ``quick`` (smaller sizes, for a smoke run)."""

    device: torch.device
    copy_gbs: float
    quick: bool = False
    warmup: int = 10
    repeats: int = 50

    def time(self, fn: Callable[[], Any]) -> float:
        """Median milliseconds of ``fn()`` with this run's warm-up and repeats."""
        return cuda_median_ms(fn, warmup=self.warmup, repeats=self.repeats)


BENCHMARKS: dict[str, Callable[[BenchContext], list[Record]]] = {}


def register(
    name: str,
) -> Callable[[Callable[[BenchContext], list[Record]]], Callable[[BenchContext], list[Record]]]:
    """Decorator: add a kernel's benchmark to the run under ``name``."""

    def add(fn: Callable[[BenchContext], list[Record]]) -> Callable[[BenchContext], list[Record]]:
        BENCHMARKS[name] = fn
        return fn

    return add


# --- the inner update (MAML eq. 1, Meta-SGD) -----------------------------------------------------


def inner_update_cases(quick: bool = False) -> list[dict[str, Any]]:
    """The inner-update workloads: the Omniglot Conv4 of the MAML paper over a meta-batch of 32
    tasks (the parameter shapes MAML updates under ``vmap``), and large flat parameter sets for
    the bandwidth target. θ is shared by the tasks and g is per task, as under ``vmap``."""
    conv4 = _conv4_shapes()
    large = [(1 << 20,)] * (2 if quick else 8)  # 2 M or 8 M entries per task
    return [
        {"name": "conv4-omniglot-maml", "shapes": conv4, "tasks": 32, "alpha": "scalar"},
        {"name": "conv4-omniglot-metasgd", "shapes": conv4, "tasks": 32, "alpha": "entry"},
        {"name": "large-maml", "shapes": large, "tasks": 16, "alpha": "scalar"},
        {"name": "large-metasgd", "shapes": large, "tasks": 16, "alpha": "entry"},
    ]


def _conv4_shapes() -> list[tuple[int, ...]]:
    from metalearn_edu.models import Conv4  # a bench-only import of a higher layer

    params = Conv4(ways=5).init(torch.Generator().manual_seed(0))
    return [tuple(p.shape) for p in params.values()]


def inner_update_bytes(case: dict[str, Any], element_size: int, *, backward: bool) -> int:
    """Compulsory bytes of one fused launch (forward, or forward and backward) for a case."""
    from metalearn_edu.kernels.inner_update import bytes_moved

    total = 0
    for shape in case["shapes"]:
        n = 1
        for s in shape:
            n *= s
        b = bytes_moved(
            case["tasks"],
            n,
            element_size,
            theta_shared=True,
            alpha=case["alpha"],
            alpha_grad=case["alpha"] == "entry",
        )
        total += b["forward"] + (b["backward"] if backward else 0)
    return total


@register("inner_update")
def bench_inner_update(ctx: BenchContext) -> list[Record]:
    """θ' = θ − α ∘ g for all parameters of all tasks: forward, and forward plus backward."""
    from metalearn_edu.kernels.inner_update import inner_update_reference

    compiled = torch.compile(inner_update_reference, dynamic=False, fullgraph=True)
    records = []
    for case in inner_update_cases(ctx.quick):
        records += _bench_inner_update_case(ctx, case, compiled)
    return records


def _bench_inner_update_case(
    ctx: BenchContext, case: dict[str, Any], compiled: Callable[..., Any]
) -> list[Record]:
    from metalearn_edu.kernels.inner_update import fused_inner_update, inner_update_reference

    dtype = torch.float32
    g = torch.Generator(device=ctx.device).manual_seed(0)

    def rand(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=g, device=ctx.device, dtype=dtype)

    names = [f"p{i}" for i in range(len(case["shapes"]))]
    shapes = dict(zip(names, case["shapes"], strict=True))
    params = {n: rand(s).requires_grad_() for n, s in shapes.items()}
    grads = {n: rand((case["tasks"], *s)).requires_grad_() for n, s in shapes.items()}
    lr: Any = 0.4
    if case["alpha"] == "entry":
        lr = {n: (rand(s).abs() * 0.01).requires_grad_() for n, s in shapes.items()}
    inputs = [*params.values(), *grads.values(), *(lr.values() if isinstance(lr, dict) else [])]
    cotangents = [rand(grads[n].shape) for n in names]

    _check_inner_update(fused_inner_update, inner_update_reference, params, grads, lr, inputs)

    def forward(update: Callable[..., Any]) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return update(params, grads, lr)

        return run

    def forward_backward(update: Callable[..., Any]) -> Callable[[], Any]:
        def run() -> Any:
            out = update(params, grads, lr)
            return torch.autograd.grad([out[n] for n in names], inputs, cotangents)

        return run

    records = []
    for pass_name, make in (("forward", forward), ("forward+backward", forward_backward)):
        record = {
            "kernel": "inner_update",
            "case": case["name"],
            "pass": pass_name,
            "tasks": case["tasks"],
            "entries_per_task": sum(_numel(s) for s in case["shapes"]),
            "tensors": len(case["shapes"]),
            "dtype": str(dtype).removeprefix("torch."),
            "bytes": inner_update_bytes(case, 4, backward=pass_name != "forward"),
            "triton_ms": ctx.time(make(fused_inner_update)),
            "eager_ms": ctx.time(make(inner_update_reference)),
            "compiled_ms": ctx.time(make(compiled)),
        }
        records.append(summarize(record, ctx.copy_gbs))
    return records


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_inner_update(
    fused: Callable[..., Any],
    reference: Callable[..., Any],
    params: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    lr: Any,
    inputs: list[torch.Tensor],
) -> None:
    """Stop the run if the kernel disagrees with the reference on the card."""
    out, ref = fused(params, grads, lr), reference(params, grads, lr)
    for name in grads:
        if not torch.equal(out[name], ref[name]):
            raise AssertionError(f"inner_update forward differs from the reference on {name}")
    cot = [torch.ones_like(ref[n]) for n in grads]
    got = torch.autograd.grad([out[n] for n in grads], inputs, cot)
    expected = torch.autograd.grad([ref[n] for n in grads], inputs, cot)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# --- the fused LSTM steps (Andrychowicz eq. 1; Ravi & Larochelle eq. 2) -------------------------


@register("lstm_optimizer_step")
def bench_lstm_optimizer_step(ctx: BenchContext) -> list[Record]:
    """The coordinate-wise LSTM optimizer step at 1e5 .. 1e7 coordinates (see
    :mod:`.bench_lstm_steps` for its bytes and FLOPs)."""
    from metalearn_edu.kernels.bench_lstm_steps import bench_lstm_optimizer_step as bench

    return bench(ctx)


@register("meta_lstm_step")
def bench_meta_lstm_step(ctx: BenchContext) -> list[Record]:
    """The Meta-LSTM meta-learner step at 1e5 .. 1e7 learner coordinates."""
    from metalearn_edu.kernels.bench_lstm_steps import bench_meta_lstm_step as bench

    return bench(ctx)


# --- the run ---------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Card, versions and date, kept with the results."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "metalearn_edu": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        info["card"] = torch.cuda.get_device_name()
    return info


def markdown_table(records: list[Record]) -> str:
    """A short table of the records: time, bandwidth against the copy's, speed-ups."""
    lines = [
        "| kernel | case | pass | Triton ms | GB/s | % of copy | x eager | x compiled |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['kernel']} | {r['case']} | {r['pass']} | {r['triton_ms']:.4f} | "
            f"{r['triton_gbs']:.0f} | {100 * r['fraction_of_copy']:.0f}% | "
            f"{r.get('speedup_vs_eager', float('nan')):.2f} | "
            f"{r.get('speedup_vs_compiled', float('nan')):.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: Path = OUT_DIR) -> Path:
    """Write ``kernels_<card>.json`` and its Markdown table to ``out_dir``; return the JSON path."""
    card = results["environment"].get("card") or "unknown"
    stem = "kernels_" + re.sub(r"[^a-z0-9]+", "_", card.lower()).strip("_")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    header = f"{card}, torch {results['environment']['torch']}, {results['environment']['date']}"
    table = markdown_table(results["records"])
    copy = f"Device-to-device copy: {results['copy_gbs']:.0f} GB/s.\n\n"
    (out_dir / f"{stem}.md").write_text(f"# Kernel benchmark: {header}\n\n{copy}{table}")
    return path


def run(
    names: Iterable[str] | None = None, *, quick: bool = False, out_dir: Path | None = OUT_DIR
) -> dict[str, Any]:
    """Run the registered benchmarks (all, or ``names``) and write the results unless
    ``out_dir`` is None. Raises :class:`NoGPUError` without CUDA."""
    device = require_cuda()
    names = list(BENCHMARKS) if names is None else list(names)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmarks {unknown}; registered: {list(BENCHMARKS)}.")
    ctx = BenchContext(device, copy_bandwidth_gbs(device), quick=quick)
    if quick:
        ctx.warmup, ctx.repeats = 3, 10
    records = []
    for name in names:
        records += BENCHMARKS[name](ctx)
    results = {"environment": environment(), "copy_gbs": ctx.copy_gbs, "records": records}
    if out_dir is not None:
        write_results(results, out_dir)
    return results


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m metalearn_edu.kernels.bench``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="kernels to run")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m metalearn_edu.kernels.bench [--only NAME ...] [--quick]``."""
    args = build_parser().parse_args(argv)
    try:
        results = run(args.only, quick=args.quick, out_dir=args.out_dir)
    except NoGPUError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(results["records"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
