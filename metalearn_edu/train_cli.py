"""``python -m metalearn_edu train``: meta-train from a preset with overrides, checkpoint, evaluate
on the test tasks and write a JSON result file.

    python -m metalearn_edu train --preset omniglot-5w1s --device cuda --seed 1
    python -m metalearn_edu train --preset sinusoid --iterations 2000 --resume
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from metalearn_edu import __version__
from metalearn_edu.checkpoint import atomic_write, load_checkpoint
from metalearn_edu.config import data_dir
from metalearn_edu.models.conv4 import CONVS
from metalearn_edu.precision import PRECISIONS, check_precision
from metalearn_edu.presets import PRESETS, build_algorithm, build_tasks
from metalearn_edu.reported import reported_accuracy

# command-line flag -> (config key, type); each overrides the preset when given
OVERRIDES: dict[str, tuple[str, type]] = {
    "--algorithm": ("algorithm", str),  # maml, fomaml, reptile, metasgd, anil, metalstm
    "--iterations": ("iterations", int),
    "--meta-batch-size": ("meta_batch_size", int),
    "--meta-lr": ("meta_lr", float),
    "--inner-lr": ("inner_lr", float),
    "--inner-steps": ("inner_steps", int),
    "--test-inner-steps": ("test_inner_steps", int),
    "--ways": ("ways", int),
    "--shots": ("shots", int),
    "--queries": ("queries", int),
    "--execution": ("execution", str),
    "--outer-optimizer": ("outer_optimizer", str),
    "--eval-tasks": ("eval_tasks", int),
    "--validate-every": ("validate_every", int),
    "--validation-tasks": ("validation_tasks", int),
    "--omniglot-root": ("omniglot_root", str),
    "--compile-mode": ("compile_mode", str),  # torch.compile's mode: default, reduce-overhead ...
    "--vmap-chunk-size": ("vmap_chunk_size", int),  # tasks per vmap chunk when memory is short
    "--sync-every": ("sync_every", int),  # read metrics back every N iterations (meta_train)
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``evaluate``."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument(
        "--output", type=Path, help="JSON result file (default: next to the checkpoint)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="sinusoid")
    parser.add_argument("--seed", type=int, help="seed for initialisation and tasks (default 0)")
    parser.add_argument("--first-order", action="store_true", help="first-order MAML gradients")
    parser.add_argument(
        "--checkpoint-inner",
        action="store_true",
        help="recompute each inner step in the backward pass (memory flat in --inner-steps)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="arithmetic of the meta-gradient: float32 (default, strict), tf32 (CUDA), bf16 "
        "(autocast); see metalearn_edu/precision.py",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC convolution activations (Conv4; faster cuDNN convolutions on a GPU)",
    )
    parser.add_argument(
        "--conv",
        choices=CONVS,
        help="how Conv4 computes its convolutions: conv2d (default) or matmul (im2col and one "
        "matrix product per layer, the same function; see metalearn_edu/models/conv4.py)",
    )
    for flag, (key, kind) in OVERRIDES.items():
        parser.add_argument(flag, dest=key, type=kind, help=f"override the preset's {key}")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="default: <data>/runs/<preset>[-<algorithm>]-seed<seed>.pt",
    )
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument(
        "--resume", action="store_true", help="continue from --checkpoint if it exists"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop training after this long, with a checkpoint to --resume from (the test "
        "evaluation runs only once all iterations are done)",
    )
    add_run_arguments(parser)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config = {"preset": args.preset, **PRESETS[args.preset]}
    for key, _ in OVERRIDES.values():
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    if args.seed is not None:
        config["seed"] = args.seed
    if args.first_order:
        config["first_order"] = True
    if args.checkpoint_inner:
        config["checkpoint_inner"] = True
    if args.channels_last:
        config["channels_last"] = True
    if args.conv is not None:
        config["conv"] = args.conv
    config["precision"] = args.precision or config.get("precision", "float32")
    return config


def environment(device: str) -> dict[str, Any]:
    """Versions and hardware, for the result file."""
    info = {
        "metalearn_edu": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def summary(result: dict[str, Any]) -> str:
    """One line: tasks, steps, loss ± CI and, for classification, accuracy ± CI."""
    line = (
        f"{result['num_tasks']} tasks, {result['inner_steps']} steps: "
        f"loss {result['loss']:.4f} ± {result['loss_ci95']:.4f}"
    )
    if math.isfinite(result["accuracy"]):
        line += f", accuracy {result['accuracy']:.4f} ± {result['accuracy_ci95']:.4f}"
    return line


def write_result(path: Path, result: dict[str, Any]) -> None:
    text = json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    print(f"result written to {path}", file=sys.stderr)


def setup_device(args: argparse.Namespace) -> str:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} asked for, but torch sees no CUDA device.")
    return args.device


def run(args: argparse.Namespace) -> int:
    from metalearn_edu.evaluation import evaluate
    from metalearn_edu.training import meta_train

    device = setup_device(args)
    config = config_from_args(args)
    try:  # before anything is built or trained
        check_precision(config["precision"], torch.device(device).type)
    except ValueError as error:
        raise SystemExit(f"--precision {config['precision']} --device {device}: {error}") from None
    name = f"{args.preset}-seed{config['seed']}"
    if config["algorithm"] != PRESETS[args.preset]["algorithm"]:  # e.g. --algorithm metasgd
        name = f"{args.preset}-{config['algorithm']}-seed{config['seed']}"
    checkpoint = args.checkpoint or data_dir() / "runs" / f"{name}.pt"
    output = args.output or checkpoint.with_suffix(".json")
    algorithm = build_algorithm(config)
    tasks = build_tasks(config, device)

    first_iteration = _saved_iteration(checkpoint) if args.resume else 0
    start = time.perf_counter()
    state = meta_train(
        algorithm,
        tasks["train"],
        config["iterations"],
        meta_batch_size=config["meta_batch_size"],
        seed=config["seed"],
        meta_lr=config["meta_lr"],
        outer_optimizer=config["outer_optimizer"],
        device=device,
        validation_tasks=tasks["val"],
        validate_every=config["validate_every"],
        validation_size=config["validation_tasks"],
        checkpoint_path=checkpoint,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        config=config,
        progress=not args.no_progress,
        sync_every=config.get("sync_every"),
        time_limit_s=args.time_limit,
    )
    train_time = time.perf_counter() - start
    train = state.history["train"]
    result: dict[str, Any] = {
        "command": "train",
        "config": config,
        "environment": environment(device),
        "checkpoint": str(checkpoint),
        "iterations_done": state.iteration,
        "finished": state.iteration >= config["iterations"],
        "final_train": {k: v[-1] for k, v in train.items() if v},
        "validation": state.history["validation"],
        "train_wall_time_s": train_time,  # this piece
        "train_wall_time_total_s": state.train_time_s,  # summed over resumed pieces
        "reported": reported_accuracy(config),  # the paper's number for this protocol, if any
    }
    done_here = state.iteration - first_iteration
    if done_here:
        print(
            f"trained iterations {first_iteration}-{state.iteration} in {train_time:.1f} s "
            f"({done_here / train_time:.1f} it/s, validation and checkpoints included)"
        )
    if not result["finished"]:
        print(
            f"stopped after --time-limit at iteration {state.iteration} of "
            f"{config['iterations']}; continue with --resume --checkpoint {checkpoint}"
        )
    elif config["eval_tasks"] > 0:
        start = time.perf_counter()
        result["test"] = evaluate(
            algorithm,
            state.meta_params,
            tasks["test"],
            num_tasks=config["eval_tasks"],
            inner_steps=config["test_inner_steps"],
            seed=config["seed"] + 3,
            device=device,
        )
        result["test_wall_time_s"] = time.perf_counter() - start
    result["wall_time_s"] = time.perf_counter() - start + train_time
    write_result(output, result)
    if "test" in result:
        print(f"test: {summary(result['test'])}")
        if result["reported"]:
            print(f"paper: {paper_line(result['reported'])}")
    return 0


def _saved_iteration(checkpoint: Path) -> int:
    """Where a resumed run starts: the checkpoint's iteration (0 if there is none yet)."""
    if not checkpoint.is_file():
        return 0
    return int(load_checkpoint(checkpoint)["iteration"])


def paper_line(reported: dict[str, Any]) -> str:
    """The paper's accuracy as one line, e.g. ``98.7 ± 0.4% (Finn et al. 2017, Table 1)``."""
    return f"{reported['accuracy_percent']} ± {reported['ci95_percent']}% ({reported['source']})"
