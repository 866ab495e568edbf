"""``python -m metalearn_edu.bench``: one MAML meta-iteration, timed side by side for each
execution (the per-task ``loop``, ``functional``, ``vmap`` and, with ``--executions``, the
``compiled`` vmap; see ``algorithms/maml.py``).

``--memory-vs-steps`` instead measures second-order MAML on Omniglot against the number of inner
steps, with and without gradient checkpointing of the inner loop (``checkpoint_inner``): peak
memory and time per meta-iteration, after checking that both give the same float64 meta-gradient.

Workloads (MAML paper): Omniglot 5-way 1-shot with 15 queries per class, the stride-2 Conv4,
meta-batch 32 (``--meta-batch`` shrinks it on a CPU), 1 and 5 inner steps, second and first
order; sinusoid regression, K = 10, meta-batch 25, 1 inner step.

Before timing, every execution's meta-gradient is compared with the loop's on the same batch
in float64 (relative difference below 1e-8, else the benchmark stops); timing is in float32, or in
each ``--precision`` given: ``--precision float32,tf32,bf16,tf32+channels-last`` times every
execution in each (see :mod:`metalearn_edu.precision`; an entry ending in ``+channels-last``, or
every entry with ``--channels-last``, also runs Conv4 with NHWC activations; one ending in
``+matmul`` runs Conv4's convolutions as matrix products, :mod:`metalearn_edu.models.conv4`).
The float64 check is the same for every precision (TF32 and bf16 autocast leave float64 alone),
so it runs once, with ``F.conv2d`` (``tests/test_conv_matmul.py`` checks that ``+matmul`` gives the
same meta-gradient).
With ``--output`` the JSON file is rewritten after every row, so a run stopped by a time limit
keeps the rows it finished.
Each variant is then timed in a fresh subprocess, so that its peak memory can be read: on a
CPU, its peak resident set (``VmHWM``) minus that of a process that only builds the inputs; on
a GPU, ``torch.cuda.max_memory_allocated``.
Images are random tensors of Omniglot's shape: the time of a meta-iteration does not depend on
pixel values, and the benchmark then needs no download.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metalearn_edu import __version__
from metalearn_edu.algorithms import MAML, choose_execution
from metalearn_edu.models import Conv4, sinusoid_mlp
from metalearn_edu.precision import PRECISIONS, check_precision
from metalearn_edu.tasks.episode import Episode

EXECUTIONS = ("loop", "functional", "vmap")  # the default; "compiled" is added on request
GRADIENT_RTOL = 1e-8  # in float64 (float32 rounding alone reaches 1e-4 through batch norm)
# suffixes of a --precision entry ("tf32+channels-last+matmul"): the Conv4 options they switch on
VARIANT_OPTIONS = {"channels-last": ("channels_last", True), "matmul": ("conv", "matmul")}
FLOAT32 = {"precision": "float32", "channels_last": False, "conv": "conv2d"}  # the default variant


def workload(
    workload: str,
    meta_batch: int,
    inner_steps: int,
    first_order: bool,
    execution: str,
    checkpoint_inner: bool = False,
    compile_mode: str | None = None,
    precision: str = "float32",
    channels_last: bool = False,
    conv: str = "conv2d",
) -> tuple[MAML, dict[str, torch.Tensor], Episode]:
    """The algorithm and one batch of tasks of a named workload (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    if workload.startswith("omniglot-"):  # "omniglot-<ways>w<shots>s", 15 queries per class
        ways, shots = (int(v) for v in workload.removeprefix("omniglot-").rstrip("s").split("w"))
        queries = 15
        model = Conv4(ways=ways, conv=conv)
        labels = torch.arange(ways)
        episode = Episode(
            torch.rand(meta_batch, ways * shots, 1, 28, 28, generator=g),
            labels.repeat_interleave(shots).expand(meta_batch, -1).contiguous(),
            torch.rand(meta_batch, ways * queries, 1, 28, 28, generator=g),
            labels.repeat_interleave(queries).expand(meta_batch, -1).contiguous(),
        )
        inner_lr = 0.4 if ways == 5 else 0.1
    elif workload == "sinusoid":
        from metalearn_edu.tasks.sinusoid import SinusoidTasks

        if conv != "conv2d":
            raise ValueError(f"conv={conv!r} is an option of Conv4; the sinusoid MLP has none.")
        model = sinusoid_mlp()
        episode = SinusoidTasks(support_size=10, query_size=10).sample(meta_batch, generator=g)
        inner_lr = 0.01
    else:
        raise ValueError(f"unknown workload {workload!r}")
    algorithm = MAML(
        model,
        inner_lr,
        inner_steps,
        first_order,
        execution=execution,
        checkpoint_inner=checkpoint_inner,
        compile_mode=compile_mode,
        precision=precision,
        channels_last=channels_last,
    )
    params = algorithm.init_meta_params(torch.Generator().manual_seed(1))
    return algorithm, params, episode


def variants(meta_batch_omniglot: int) -> list[dict[str, Any]]:
    out = []
    for steps in (1, 5):
        for first_order in (False, True):
            out.append(
                {
                    "workload": "omniglot-5w1s",
                    "meta_batch": meta_batch_omniglot,
                    "inner_steps": steps,
                    "first_order": first_order,
                }
            )
    for first_order in (False, True):
        out.append(
            {"workload": "sinusoid", "meta_batch": 25, "inner_steps": 1, "first_order": first_order}
        )
    return out


def check_gradients(
    spec: dict[str, Any], device: str, executions: tuple[str, ...] = EXECUTIONS
) -> dict[str, float]:
    """Each execution's float64 meta-gradient against the loop's: max|g − g_loop| / max|g_loop|.

    An execution named ``"loop+checkpoint"`` is the loop with ``checkpoint_inner=True``. The
    spec's ``precision`` does not enter: the check is in float64, which TF32 and bf16 autocast
    leave alone.
    """
    grads = {}
    executions = ("loop", *(e for e in executions if e != "loop"))
    spec = {**spec, "precision": "float32"}
    for execution in executions:
        algorithm, params, episode = workload(**spec, **_execution_args(execution))
        params = {n: p.to(device, torch.float64) for n, p in params.items()}
        grads[execution], _ = algorithm.meta_gradient(params, episode.to(device, torch.float64))
    scale = max(g.abs().max().item() for g in grads["loop"].values())
    diffs = {}
    for execution in executions:
        diff = max(
            (grads[execution][n] - grads["loop"][n]).abs().max().item() for n in grads["loop"]
        )
        diffs[execution] = diff / scale
        if diffs[execution] > GRADIENT_RTOL:
            raise SystemExit(
                f"{spec}: the {execution} meta-gradient differs from the loop's by "
                f"{diffs[execution]:.2e} (relative); not timing a wrong computation."
            )
    return diffs


def parse_precisions(text: str, channels_last: bool = False) -> list[dict[str, Any]]:
    """``"float32,tf32+channels-last+matmul"`` -> ``[{"precision": "float32", "channels_last":
    False, "conv": "conv2d"}, {"precision": "tf32", "channels_last": True, "conv": "matmul"}]``;
    ``channels_last`` sets it for every entry."""
    out = []
    for entry in text.split(","):
        name, *options = entry.split("+")
        if name not in PRECISIONS or any(o not in VARIANT_OPTIONS for o in options):
            raise ValueError(
                f"--precision takes names from {PRECISIONS}, each optionally followed by "
                f"{' and '.join('+' + o for o in VARIANT_OPTIONS)}, separated by commas; "
                f"got {entry!r}."
            )
        variant = {**FLOAT32, "precision": name, "channels_last": channels_last}
        variant.update(VARIANT_OPTIONS[o] for o in options)
        out.append(variant)
    return out


def _execution_args(execution: str) -> dict[str, Any]:
    """ "loop+checkpoint" -> the loop with checkpoint_inner=True; others as they are."""
    if execution == "loop+checkpoint":
        return {"execution": "loop", "checkpoint_inner": True}
    return {"execution": execution}


def _max_rss_mb() -> float:
    """This process's peak resident set. On Linux, read ``VmHWM``: ``getrusage``'s ``ru_maxrss``
    carries over the parent's peak across fork + exec, which hides the child's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, B on macOS
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20


def time_variant(spec: dict[str, Any], execution: str, device: str, repeats: int) -> dict:
    """Runs in a fresh process: one warm-up iteration, then ``repeats`` timed ones.

    ``execution="none"`` builds the same inputs and stops: its maximum resident set is the
    baseline that the others' are compared with.
    """
    algorithm, params, episode = workload(
        **spec, **_execution_args("loop" if execution == "none" else execution)
    )
    params = {n: p.to(device) for n, p in params.items()}
    episode = episode.to(device)
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if execution == "none":
        return {"max_rss_mb": _max_rss_mb()}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    algorithm.meta_gradient(params, episode)  # warm-up (allocator, kernels)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        algorithm.meta_gradient(params, episode)
        sync()
        times.append(time.perf_counter() - start)
    # On a shared machine other processes only ever add time: report the median and the best.
    median = statistics.median(times)
    result = {
        "seconds_per_iteration": median,
        "it_per_s": 1 / median,
        "best_it_per_s": 1 / min(times),
        "max_rss_mb": _max_rss_mb(),
    }
    if cuda:
        result["peak_memory_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return result


def _run_worker(spec, execution, device, repeats, threads) -> dict:
    payload = json.dumps(
        {
            "spec": spec,
            "execution": execution,
            "device": device,
            "repeats": repeats,
            "threads": threads,
        }
    )
    out = subprocess.run(
        [sys.executable, "-m", "metalearn_edu.bench", "--worker", payload],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker failed for {spec} {execution}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine(device: str) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m metalearn_edu.bench``."""
    parser = argparse.ArgumentParser(prog="python -m metalearn_edu.bench", description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--meta-batch", type=int, default=32, help="Omniglot meta-batch (paper: 32)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations per variant")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workloads", default="omniglot-5w1s,sinusoid")
    parser.add_argument(
        "--executions",
        default=",".join(EXECUTIONS),
        help="comma-separated, from loop, functional, vmap, compiled (default: the first three)",
    )
    parser.add_argument(
        "--inner-steps", help="comma-separated inner step counts to keep (default: 1,5)"
    )
    parser.add_argument(
        "--orders",
        default="second,first",
        help="comma-separated MAML orders to keep: second, first (default: both)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        help="comma-separated arithmetic to time each execution in: float32 (strict), tf32 "
        "(CUDA), bf16 (autocast); a name followed by +channels-last also lays Conv4's "
        "activations out NHWC, and +matmul computes Conv4's convolutions as matrix products, e.g. "
        "float32,tf32,bf16,tf32+channels-last,tf32+matmul (default: float32)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="every --precision entry with NHWC Conv4 activations (Conv4's channels_last)",
    )
    parser.add_argument(
        "--compile-mode",
        help="torch.compile mode of the compiled execution (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument(
        "--memory-vs-steps",
        metavar="STEPS",
        help="e.g. 1,2,4,8: second-order MAML against inner steps, with and without "
        "checkpoint_inner (instead of the execution comparison); give one Omniglot workload, "
        "e.g. --workloads omniglot-20w5s",
    )
    parser.add_argument("--output", type=Path, help="JSON file for the figures")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.worker:
        job = json.loads(args.worker)
        if job["threads"]:
            torch.set_num_threads(job["threads"])
        result = time_variant(job["spec"], job["execution"], job["device"], job["repeats"])
        print(json.dumps(result))
        return 0

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    machine_info = machine(args.device)  # load average at the start
    device = torch.device(args.device)
    try:
        precisions = parse_precisions(args.precision, args.channels_last)
        for variant in precisions:
            check_precision(variant["precision"], device.type)
    except ValueError as error:
        parser.error(str(error))
    orders = set(args.orders.split(","))
    if not orders or orders - {"second", "first"}:
        parser.error(f"--orders takes second and/or first, got {args.orders!r}")

    def report(rows: list[dict[str, Any]], title: str) -> dict[str, Any]:
        return {
            "benchmark": title,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info,
            "versions": {
                "metalearn_edu": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "device": args.device,
            "threads": args.threads or torch.get_num_threads(),
            "repeats": {"omniglot-5w1s": args.repeats, "sinusoid": 20 * args.repeats},
            "memory_note": (
                "CPU: maximum resident set of a process that runs the iterations, minus that of "
                "an identical process that only imports and builds the inputs (a few MB of "
                "noise). GPU: torch.cuda.max_memory_allocated above what the inputs hold."
            ),
            "auto_execution": {
                "Conv4": choose_execution(Conv4(), device),
                "MLP": choose_execution(sinusoid_mlp(), device),
            },
            "results": rows,
            "wall_time_s": time.time() - started,
            "load_average_at_end": os.getloadavg(),
        }

    def save(rows: list[dict[str, Any]], title: str) -> None:
        if args.output:
            from metalearn_edu.checkpoint import atomic_write

            text = json.dumps(report(rows, title), indent=2) + "\n"
            atomic_write(args.output, lambda f: f.write(text.encode()))

    if args.memory_vs_steps:
        if precisions != [FLOAT32]:
            parser.error("--memory-vs-steps measures float32 only: leave out --precision")
        title = f"second-order MAML ({args.workloads}) against inner steps, checkpointed or not"
        rows = memory_vs_steps(
            [int(k) for k in args.memory_vs_steps.split(",")],
            args.meta_batch,
            args.device,
            args.repeats,
            args.threads,
            workload=args.workloads,
        )
    else:
        executions = tuple(args.executions.split(","))
        unknown = set(executions) - {"loop", "functional", "vmap", "compiled"}
        if unknown or "loop" not in executions:
            parser.error(f"--executions must include loop and name known ones, got {executions}")
        title = "one MAML meta-iteration (meta_gradient), by execution and precision"
        rows = compare_executions(
            set(args.workloads.split(",")),
            executions,
            args.meta_batch,
            args.device,
            args.repeats,
            args.threads,
            inner_steps={int(k) for k in args.inner_steps.split(",")} if args.inner_steps else None,
            compile_mode=args.compile_mode,
            orders=orders,
            precisions=precisions,
            on_row=lambda rows: save(rows, title),
        )
    save(rows, title)
    if args.output:
        print(f"figures written to {args.output}")
    return 0


def memory_vs_steps(
    steps: list[int],
    meta_batch: int,
    device: str,
    repeats: int,
    threads: int | None,
    workload: str = "omniglot-20w5s",
) -> list[dict[str, Any]]:
    """Peak memory and time of second-order MAML for each inner step count, with and without
    gradient checkpointing of the inner loop (each measured in a fresh process)."""
    rows = []
    for k in steps:
        spec = {
            "workload": workload,
            "meta_batch": meta_batch,
            "inner_steps": k,
            "first_order": False,
        }
        diffs = check_gradients(spec, device, ("loop", "loop+checkpoint"))
        baseline = _run_worker(spec, "none", device, 0, threads)["max_rss_mb"]
        for execution in ("loop", "loop+checkpoint"):
            timing = _run_worker(spec, execution, device, repeats, threads)
            if "peak_memory_mb" not in timing:
                timing["peak_memory_mb"] = timing["max_rss_mb"] - baseline
            row = {
                **spec,
                "checkpoint_inner": execution == "loop+checkpoint",
                **timing,
                "gradient_rel_diff_vs_loop": diffs[execution],
            }
            rows.append(row)
            print(
                f"steps={k:<3} checkpoint={row['checkpoint_inner']!s:<5}: "
                f"{timing['seconds_per_iteration']:7.3f} s/it  "
                f"peak {timing['peak_memory_mb']:8.1f} MB  grad diff {diffs[execution]:.1e}",
                flush=True,
            )
    return rows


def compare_executions(
    wanted: set[str],
    executions: tuple[str, ...],
    meta_batch: int,
    device: str,
    repeats: int,
    threads: int | None,
    inner_steps: set[int] | None = None,
    compile_mode: str | None = None,
    orders: set[str] | None = None,
    precisions: list[dict[str, Any]] | None = None,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each workload timed in each execution and each precision (default: float32), with speed
    and memory relative to the loop, which is timed once, in the first precision (it is the
    slow reference, not a candidate); ``on_row(rows)`` is called after every row."""
    precisions = precisions or [FLOAT32]
    executions = ("loop", *(e for e in executions if e != "loop"))  # the reference comes first
    rows = []
    for spec in variants(meta_batch):
        order = "first" if spec["first_order"] else "second"
        if (
            spec["workload"] not in wanted
            or (inner_steps is not None and spec["inner_steps"] not in inner_steps)
            or (orders is not None and order not in orders)
        ):
            continue
        if compile_mode:
            spec = {**spec, "compile_mode": compile_mode}
        diffs = check_gradients(spec, device, executions)
        baseline = _run_worker(spec, "none", device, 0, threads)["max_rss_mb"]
        loop = None
        for variant in precisions:
            conv4_options = variant["channels_last"] or variant["conv"] != "conv2d"
            if conv4_options and not spec["workload"].startswith("omniglot-"):
                continue  # options of Conv4's convolutions
            spec_p = {**spec, **variant}
            for execution in executions:
                if execution == "loop" and loop is not None:
                    continue
                n = repeats if spec["workload"] != "sinusoid" else 20 * repeats
                timing = _run_worker(spec_p, execution, device, n, threads)
                if "peak_memory_mb" not in timing:
                    timing["peak_memory_mb"] = timing["max_rss_mb"] - baseline
                loop = loop or timing
                row = {
                    **spec_p,
                    "order": order,
                    "execution": execution,
                    **timing,
                    "speed_vs_loop": timing["it_per_s"] / loop["it_per_s"],
                    "memory_vs_loop": (
                        timing["peak_memory_mb"] / loop["peak_memory_mb"]
                        if loop["peak_memory_mb"] >= 1
                        else None  # too small to measure as a resident set
                    ),
                    "gradient_rel_diff_vs_loop": diffs[execution],
                }
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
                layout = "+NHWC" * variant["channels_last"]
                layout += "+matmul" * (variant["conv"] == "matmul")
                print(
                    f"{spec['workload']:>14} mb={spec['meta_batch']:<3} "
                    f"steps={spec['inner_steps']} {order:>6} {execution:>10} "
                    f"{variant['precision'] + layout:>12}: {timing['it_per_s']:8.2f} it/s "
                    f"(best {timing['best_it_per_s']:7.2f}) "
                    f"(x{row['speed_vs_loop']:.2f} loop)  "
                    f"peak {timing['peak_memory_mb']:8.1f} MB "
                    f"(x{row['memory_vs_loop'] or float('nan'):.2f})  "
                    f"grad diff {diffs[execution]:.1e}",
                    flush=True,
                )
    return rows


if __name__ == "__main__":
    sys.exit(main())
