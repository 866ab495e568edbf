"""The prepared GPU script asks only for what exists: GPU time is too scarce to lose to a typo."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def commands() -> list[list[str]]:
    """Every ``$PY ...`` command of the script, continuation lines joined, variables filled in."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    text = text.replace("$OUT_DIR", "data/benchmarks").replace("${CARD}", "CARD")
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\$PY (.+)$", line):
            try:
                words = shlex.split(match.group(1))
            except ValueError:  # inside `bash -c "..."`: the version print, nothing to parse
                continue
            found.append(words)
    return found


def test_the_script_is_valid_bash_and_refuses_without_a_gpu():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    import torch

    if not torch.cuda.is_available():
        out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
        assert out.returncode == 2 and "no CUDA device" in out.stderr


def test_every_benchmark_command_parses_and_every_test_file_exists():
    seen = set()
    for words in commands():
        if words[:2] == ["-m", "pytest"]:
            files = [w for w in words[2:] if w.endswith(".py")]
            assert files and all((ROOT / f).is_file() for f in files), files
            seen.add("pytest")
        elif words[0] == "-m" and words[1].startswith("metalearn_edu."):
            module = importlib.import_module(words[1])
            args = module.build_parser().parse_args(words[2:])  # exits on an unknown flag
            if getattr(args, "executions", None):
                assert set(args.executions.split(",")) <= {"loop", "functional", "vmap", "compiled"}
            if getattr(args, "precision", None):  # parsed by the benchmark itself, not argparse
                module.parse_precisions(args.precision, args.channels_last)
            seen.add(words[1])
    assert seen == {"pytest", "metalearn_edu.bench", "metalearn_edu.kernels.bench"}
