"""``python -m metalearn_edu.compile_report``: what ``torch.compile`` made of MAML's meta-gradient.

On an H200 with torch 2.11 (``data/benchmarks/maml_NVIDIA_H200.json``) the compiled execution ran
Omniglot 5-way 1-shot at meta-batch 32 at 20 meta-iterations per second, hardly faster than plain
vmap (17.6), where issue 7 measured 84 for vmap under ``torch.compile`` on the same card. The
cause, found with torch 2.11 on a CPU: a graph break in the inner update's kernel dispatch made
Dynamo skip the whole function (fixed; the execution now compiles with ``fullgraph=True``). This
report says what the compiler makes of the step, for each compile mode asked for:

- ``torch._dynamo.explain``: how many graphs Dynamo made of the vmapped per-task gradient, how
  many graph breaks, and their reasons (each break hands the code between graphs back to eager
  PyTorch, one operation at a time);
- the first call (compilation included) and meta-iterations per second after warm-up;
- Inductor's counters, among them how often CUDA graphs were skipped (``reduce-overhead``);
- the ten most expensive kernels of three meta-iterations (``torch.profiler``);
- on CUDA, plain vmap with ``torch.backends.cudnn.benchmark`` off and on: under vmap each task's
  adapted weights make the query convolutions grouped convolutions (one group per task), whose
  default cuDNN algorithm may be far from the fastest one benchmarking finds.

It runs on a CPU too (``--device cpu``, smaller ``--meta-batch``), where the tests run it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from metalearn_edu import __version__
from metalearn_edu.algorithms.maml import meta_gradient_step
from metalearn_edu.bench import machine, workload
from metalearn_edu.checkpoint import atomic_write
from metalearn_edu.kernels._dispatch import reference_only
from metalearn_edu.models.conv4 import CONVS
from metalearn_edu.precision import PRECISIONS, check_precision


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _seconds_per_iteration(algorithm, params, episode, device: str, repeats: int) -> float:
    """Mean seconds per meta-gradient over ``repeats`` calls, after three warm-up calls."""
    for _ in range(3):
        algorithm.meta_gradient(params, episode, sync=False)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        algorithm.meta_gradient(params, episode, sync=False)
    _sync(device)
    return (time.perf_counter() - start) / repeats


def report_mode(
    name: str,
    meta_batch: int,
    mode: str | None,
    device: str,
    repeats: int,
    precision: str = "float32",
    conv: str = "conv2d",
) -> dict:
    """Explain, time and profile the compiled meta-gradient in one ``torch.compile`` mode."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    algorithm, params, episode = workload(
        name, meta_batch, 1, False, "compiled", compile_mode=mode, precision=precision, conv=conv
    )
    params = {n: p.to(device) for n, p in params.items()}
    episode = episode.to(device)
    tensors = (episode.support_x, episode.support_y, episode.query_x, episode.query_y)
    with reference_only():
        explained = torch._dynamo.explain(meta_gradient_step(algorithm))(params, *tensors)
    torch._dynamo.reset()
    counters.clear()

    start = time.perf_counter()
    algorithm.meta_gradient(params, episode)
    _sync(device)
    first = time.perf_counter() - start
    per_iteration = _seconds_per_iteration(algorithm, params, episode, device, repeats)

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(3):
            algorithm.meta_gradient(params, episode, sync=False)
        _sync(device)
    sort = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    return {
        "compile_mode": mode or "default",
        "precision": precision,
        "conv": conv,
        "graph_count": explained.graph_count,
        "graph_break_count": explained.graph_break_count,
        "break_reasons": sorted({str(r.reason) for r in explained.break_reasons}),
        "first_call_s": first,
        "seconds_per_iteration": per_iteration,
        "it_per_s": 1 / per_iteration,
        "inductor_counters": dict(counters["inductor"]),
        "top_kernels": profile.key_averages().table(sort_by=sort, row_limit=10),
    }


def vmap_with_cudnn_benchmark(name: str, meta_batch: int, device: str, repeats: int) -> dict:
    """Meta-iterations per second of plain vmap with cuDNN's benchmark mode off and on."""
    algorithm, params, episode = workload(name, meta_batch, 1, False, "vmap")
    params = {n: p.to(device) for n, p in params.items()}
    episode = episode.to(device)
    saved, speeds = torch.backends.cudnn.benchmark, {}
    try:
        for benchmark in (False, True):
            torch.backends.cudnn.benchmark = benchmark  # cuDNN tries its algorithms in warm-up
            seconds = _seconds_per_iteration(algorithm, params, episode, device, repeats)
            speeds[f"cudnn_benchmark_{str(benchmark).lower()}"] = 1 / seconds
    finally:
        torch.backends.cudnn.benchmark = saved
    return speeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_edu.compile_report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workload", default="omniglot-5w1s", help="omniglot-<W>w<S>s or sinusoid")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--modes", default="default,reduce-overhead", help="torch.compile modes")
    parser.add_argument(
        "--precision", default="float32", choices=PRECISIONS, help="see metalearn_edu.precision"
    )
    parser.add_argument(
        "--convs",
        default="conv2d",
        help="Conv4's convolutions, each reported in every mode: conv2d and/or matmul "
        "(see metalearn_edu/models/conv4.py)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed meta-iterations")
    parser.add_argument("--output", type=Path, help="JSON file (default: print only)")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} asked for, but torch sees no CUDA device.")
    modes = [None if m == "default" else m for m in args.modes.split(",")]
    convs = args.convs.split(",")
    if set(convs) - set(CONVS):
        raise SystemExit(f"--convs takes names from {CONVS}, got {args.convs!r}.")
    try:
        check_precision(args.precision, args.device.split(":")[0])
    except ValueError as error:
        raise SystemExit(str(error)) from None
    report: dict[str, Any] = {
        "benchmark": "metalearn_edu.compile_report",
        "date": time.strftime("%Y-%m-%d"),
        "workload": args.workload,
        "meta_batch": args.meta_batch,
        "precision": args.precision,
        "device": args.device,
        "machine": machine(args.device),
        "versions": {"metalearn_edu": __version__, "torch": torch.__version__},
        "modes": [],
    }
    for conv, mode in ((c, m) for c in convs for m in modes):
        row = report_mode(
            args.workload, args.meta_batch, mode, args.device, args.repeats, args.precision, conv
        )
        report["modes"].append(row)
        print(
            f"mode {row['compile_mode']}, {args.precision}, {conv}: "
            f"{row['graph_count']} graph(s), {row['graph_break_count']} break(s); "
            f"first call {row['first_call_s']:.1f} s; "
            f"{row['it_per_s']:.2f} it/s",
            flush=True,
        )
        for reason in row["break_reasons"]:
            print(f"  break: {reason}")
        print(f"  inductor counters: {row['inductor_counters']}")
        print(row["top_kernels"], flush=True)
        _write(args.output, report)
    if args.device.startswith("cuda"):
        speeds = vmap_with_cudnn_benchmark(
            args.workload, args.meta_batch, args.device, args.repeats
        )
        report["vmap_it_per_s"] = speeds
        print("vmap, it/s: " + ", ".join(f"{k} {v:.2f}" for k, v in speeds.items()), flush=True)
        _write(args.output, report)
    return report


def _write(path: Path | None, report: dict[str, Any]) -> None:
    """Written after every part: a run cut short keeps what it finished."""
    if path:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))


def main(argv: list[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
