"""``python -m metalearn_edu.bench_training``: is the training loop as fast as its meta-gradient?

The MAML paper's Omniglot run is 60,000 meta-iterations: what it costs is the speed of the whole
loop (sample a batch of tasks, meta-gradient, Adam, bookkeeping), not of the meta-gradient alone,
which is what ``python -m metalearn_edu.bench`` times. This benchmark times, in one process and on
the same workload (Omniglot 5-way 1-shot, 15 queries per class, meta-batch 32, one inner step at
alpha 0.4, second order: the paper's setting, real images from the cache):

1. ``step``: the meta-gradient alone, on one fixed batch of tasks already on the device;
2. ``loop``: :func:`metalearn_edu.training.meta_train` end to end, tasks sampled on the device,
   metrics read back every 100 iterations (how the command line trains);
3. ``loop_sync_every_1``: the same, reading the metrics back after every iteration, so that the
   host waits for each step before preparing the next one;
4. ``loop_host_sampling``: as (2), with each batch of tasks assembled on the host and copied over.

On a CPU there is nothing to overlap and (2)-(4) differ little; on a GPU the gaps between (1) and
(2), (3), (4) are what the loop costs. Iterations per second are medians over ``--repeats``
timed blocks of ``--iterations`` iterations each, after a warm-up block (which includes the
compilation of ``--execution compiled``). Results go to a JSON file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from metalearn_edu import __version__
from metalearn_edu.algorithms import MAML
from metalearn_edu.bench import machine
from metalearn_edu.checkpoint import atomic_write
from metalearn_edu.data.omniglot import Omniglot, load_omniglot
from metalearn_edu.models import Conv4
from metalearn_edu.tasks.omniglot import OmniglotTasks
from metalearn_edu.training import init_state, meta_train

VARIANTS = ("step", "loop", "loop_sync_every_1", "loop_host_sampling")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_variant(
    variant: str,
    algorithm: MAML,
    data: Omniglot,
    *,
    device: str,
    meta_batch: int,
    iterations: int,
    repeats: int,
) -> list[float]:
    """Seconds per iteration of ``variant``, one value per timed block."""
    on_device = variant != "loop_host_sampling"
    tasks = OmniglotTasks(
        "train", ways=5, shots=1, queries=15, data=data, device=device if on_device else None
    )
    state = init_state(algorithm, seed=0, device=device)
    blocks = []
    if variant == "step":
        episode = tasks.sample(meta_batch, generator=torch.Generator().manual_seed(0))
        episode = episode.to(device)
        for block in range(repeats + 1):  # block 0 warms up
            _sync(device)
            start = time.perf_counter()
            for _ in range(iterations):
                algorithm.meta_gradient(state.meta_params, episode, sync=False)
            _sync(device)
            if block:
                blocks.append((time.perf_counter() - start) / iterations)
        return blocks
    sync_every = 1 if variant == "loop_sync_every_1" else 100
    for block in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        meta_train(
            algorithm,
            tasks,
            (block + 1) * iterations,  # a total: each call continues the same run
            meta_batch_size=meta_batch,
            state=state,
            device=device,
            progress=False,
            sync_every=sync_every,
        )
        _sync(device)
        if block:
            blocks.append((time.perf_counter() - start) / iterations)
    return blocks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_edu.bench_training", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--execution", default="auto", help="as MAML(execution=...)")
    parser.add_argument("--compile-mode", default=None, help="e.g. reduce-overhead")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=100, help="per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--output", type=Path, help="JSON file (default data/benchmarks/training_<device>.json)"
    )
    return parser


def run(args: argparse.Namespace, data: Omniglot | None = None) -> dict[str, Any]:
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} asked for, but torch sees no CUDA device.")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = data if data is not None else load_omniglot()
    algorithm = MAML(
        Conv4(ways=5),
        inner_lr=0.4,
        inner_steps=1,
        execution=args.execution,
        compile_mode=args.compile_mode,
    )
    rows = []
    for variant in variants:
        blocks = time_variant(
            variant,
            algorithm,
            data,
            device=args.device,
            meta_batch=args.meta_batch,
            iterations=args.iterations,
            repeats=args.repeats,
        )
        median = statistics.median(blocks)
        rows.append({"variant": variant, "seconds_per_iteration": median, "it_per_s": 1 / median})
        print(f"{variant:>20}: {1 / median:9.2f} it/s", flush=True)
    step = next((r["it_per_s"] for r in rows if r["variant"] == "step"), None)
    for row in rows:
        row["fraction_of_step_speed"] = row["it_per_s"] / step if step else None
    return {
        "benchmark": "metalearn_edu.bench_training",
        "date": datetime.date.today().isoformat(),
        "workload": "omniglot-5w1s, 15 queries, second order, 1 inner step, alpha 0.4",
        "meta_batch": args.meta_batch,
        "execution": args.execution,
        "compile_mode": args.compile_mode,
        "iterations_per_block": args.iterations,
        "repeats": args.repeats,
        "device": args.device,
        "machine": machine(args.device),
        "versions": {"metalearn_edu": __version__, "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    output = args.output or Path("data/benchmarks") / f"training_{args.device.split(':')[0]}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(output, lambda f: f.write(text.encode()))
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
