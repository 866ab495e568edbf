"""The prepared GPU scripts ask only for what exists: GPU time is too scarce to lose to a typo."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from metalearn_edu import bench, train_cli

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "gpu_check.sh"
PAPER_RUN = ROOT / "scripts" / "gpu_paper_run.sh"
FILLED = {
    "$OUT_DIR": "data/benchmarks",
    "${CARD}": "CARD",
    '"$COMPILE_MODE"': "reduce-overhead",
    '"$PRECISION"': "float32",
    '"$CONV"': "conv2d",
    "$((MINUTES * 60 - 60))": "420",
    '"$RUN_DIR/$NAME.pt"': "data/paper_runs/run.pt",
    '"$RUN_DIR/$NAME.json"': "data/paper_runs/run.json",
}


def commands(script: Path) -> list[list[str]]:
    """Every Python command of a script (``$PY ...`` or ``"${PYTEST[@]}" ...``), continuation
    lines joined, variables filled in."""
    text = script.read_text().replace("\\\n", " ")
    for variable, value in FILLED.items():
        text = text.replace(variable, value)
    pytest_array = re.search(r'^PYTEST=\(.*"\$PY" (.*)\)$', text, re.MULTILINE)
    if pytest_array:
        text = text.replace('"${PYTEST[@]}"', "$PY " + pytest_array.group(1))
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\$PY (.+?)(?:\s*2>&1.*)?$", line):
            try:
                words = shlex.split(match.group(1))
            except ValueError:  # inside `bash -c "..."`: the version print, nothing to parse
                continue
            if words[0] == "-m":  # not `$PY -c ...`
                found.append(words)
    return found


@pytest.mark.parametrize("script", [CHECK, PAPER_RUN], ids=lambda p: p.name)
def test_the_scripts_are_valid_bash_and_refuse_without_a_gpu(script):
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    import torch

    if not torch.cuda.is_available():
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
        assert out.returncode == 2 and "no CUDA device" in out.stderr


def test_the_check_runs_named_groups_and_refuses_unknown_ones():
    out = subprocess.run(
        ["bash", str(CHECK), "kernels", "warp"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2 and "unknown group 'warp'" in out.stderr
    text = CHECK.read_text()
    for group in ("kernels", "maml", "compile", "speed"):
        assert f"if wanted {group}; then" in text


def test_every_benchmark_command_parses_and_every_test_file_exists():
    seen = set()
    for words in commands(CHECK):
        if words[:2] == ["-m", "pytest"]:
            assert "addopts=" in words  # the GPU machine has no nbval
            files = [w for w in words[2:] if w.endswith(".py")]
            assert files and all((ROOT / f).is_file() for f in files), files
            seen.add("pytest")
        elif words[0] == "-m" and words[1].startswith("metalearn_edu."):
            module = importlib.import_module(words[1])
            args = module.build_parser().parse_args(words[2:])  # exits on an unknown flag
            if getattr(args, "executions", None):
                assert set(args.executions.split(",")) <= {"loop", "functional", "vmap", "compiled"}
            if words[1] == "metalearn_edu.bench":
                bench.parse_precisions(args.precision)  # raises on an unknown name or option
                if not args.memory_vs_steps:  # the loop is the reference every row is compared to
                    assert "loop" in args.executions.split(",")
            seen.add(words[1])
    assert seen == {
        "pytest",
        "metalearn_edu.bench",
        "metalearn_edu.kernels.bench",
        "metalearn_edu.compile_report",
    }


def test_the_paper_run_is_the_papers_setting_through_the_command_line():
    (words,) = commands(PAPER_RUN)
    assert words[:3] == ["-m", "metalearn_edu", "train"]
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(words[3:])  # exits on an unknown flag
    assert args.preset == "omniglot-5w1s" and args.device == "cuda" and args.resume
    assert args.time_limit == 420 and args.execution == "compiled"
    config = train_cli.config_from_args(args)
    # nothing that changes the paper's protocol is overridden
    assert {k: config[k] for k in ("iterations", "meta_batch_size", "inner_steps")} == {
        "iterations": 60_000,
        "meta_batch_size": 32,
        "inner_steps": 1,
    }
    assert config["eval_tasks"] == 600 and config["test_inner_steps"] == 3
    assert "data/paper_runs/" in str(args.checkpoint)


def test_the_paper_run_refuses_a_bad_number_of_minutes():
    for minutes in ("1", "ten", "-3"):
        out = subprocess.run(
            ["bash", str(PAPER_RUN), minutes], capture_output=True, text=True, check=False
        )
        assert out.returncode == 2 and "MINUTES must be a whole number" in out.stderr
