"""``python -m metalearn_edu evaluate``: score a checkpoint on new tasks (600 by default) with a
95% confidence interval, with as many test-time inner steps as asked, and write a JSON result.

    python -m metalearn_edu evaluate --checkpoint data/runs/omniglot-5w1s-seed0.pt --inner-steps 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from metalearn_edu.checkpoint import check_compatible, load_checkpoint
from metalearn_edu.precision import PRECISIONS, check_precision
from metalearn_edu.presets import build_algorithm, build_tasks
from metalearn_edu.reported import reported_accuracy
from metalearn_edu.train_cli import (
    add_run_arguments,
    environment,
    paper_line,
    setup_device,
    summary,
    write_result,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--tasks", type=int, default=600, help="number of tasks (default 600)")
    parser.add_argument("--inner-steps", type=int, help="default: the run's test_inner_steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation tasks")
    parser.add_argument("--omniglot-root", help="where the Omniglot download lives")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="arithmetic of the adaptation (default: the run's; e.g. float32 to evaluate a run "
        "trained in tf32 on a CPU)",
    )
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from metalearn_edu.evaluation import evaluate

    device = setup_device(args)
    saved = load_checkpoint(args.checkpoint)
    config = dict(saved["config"])
    if args.omniglot_root:
        config["omniglot_root"] = args.omniglot_root
    if args.precision:
        config["precision"] = args.precision
    try:
        check_precision(config.get("precision", "float32"), torch.device(device).type)
    except ValueError as error:
        hint = "" if args.precision else " (the run's own; choose another with --precision)"
        raise SystemExit(f"{error}{hint}") from None
    algorithm = build_algorithm(config)
    expected = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    check_compatible(saved["meta_params"], expected, source=str(args.checkpoint))
    meta_params = {n: p.to(device) for n, p in saved["meta_params"].items()}
    tasks = build_tasks(config, device)[args.split]
    inner_steps = args.inner_steps
    if inner_steps is None:
        inner_steps = config.get("test_inner_steps", config["inner_steps"])

    start = time.perf_counter()
    result = evaluate(
        algorithm,
        meta_params,
        tasks,
        num_tasks=args.tasks,
        inner_steps=inner_steps,
        seed=args.seed,
        device=device,
    )
    report = {
        "command": "evaluate",
        "checkpoint": str(args.checkpoint),
        "iteration": saved["iteration"],
        "split": args.split,
        "config": config,
        "environment": environment(device),
        "result": result,
        "reported": reported_accuracy(config) if args.split == "test" else None,
        "wall_time_s": time.perf_counter() - start,
    }
    write_result(args.output or args.checkpoint.with_suffix(f".eval-{args.split}.json"), report)
    print(f"{args.split}: {summary(result)}")
    if report["reported"]:
        print(f"paper: {paper_line(report['reported'])}")
    return 0
