"""The environment doctor: what this machine offers the course, and what to fix.

Run it from a notebook (``doctor.print_report()``) or a shell (``python -m metalearn_edu doctor``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from metalearn_edu import config
from metalearn_edu.data.omniglot import ARCHIVES


@dataclass(frozen=True)
class Finding:
    item: str
    value: str
    ok: bool
    advice: str = ""


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except ImportError:
        return None


def omniglot_status() -> Finding:
    """Where the library finds verified Omniglot archives, without downloading anything."""
    from metalearn_edu.data.omniglot import locate_archives

    advice = (
        "notebooks 01 and 05 on need it: it is downloaded on first use when the internet is "
        f"reachable; offline, put {' and '.join(ARCHIVES)} in a folder and set "
        f"{config.OMNIGLOT_ENV} to it"
    )
    try:
        found = locate_archives(download_missing=False)
    except FileNotFoundError:
        return Finding("Omniglot archives", "not downloaded yet", True, advice)
    except ValueError as error:  # present but wrong: checksum or layout
        return Finding("Omniglot archives", str(error).splitlines()[0], False, advice)
    return Finding("Omniglot archives", _shown(next(iter(found.values())).parent), True)


def _shown(path: Path) -> str:
    """A path as the reader should see it: relative to the working folder (portable output)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def report() -> list[Finding]:
    """Check Python, PyTorch and its devices, the notebook packages, fast mode and the data."""
    import torch

    findings = [
        Finding(
            "Python",
            platform.python_version(),
            sys.version_info >= (3, 10),
            "the course needs Python 3.10 or newer",
        ),
        Finding(
            "PyTorch",
            torch.__version__,
            tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 4),
            "torch.func needs torch 2.4 or newer: pip install -U 'torch>=2.4'",
        ),
    ]
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device = "mps (Apple GPU)"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    findings.append(Finding("Device", device, True))
    for module, why in [
        ("numpy", "arrays"),
        ("matplotlib", "figures"),
        ("ipywidgets", "interactive figures (every widget also has a static figure)"),
        ("tqdm", "progress bars"),
    ]:
        version = _version(module)
        findings.append(
            Finding(module, version or "missing", version is not None, f"needed for {why}")
        )
    triton = _version("triton")  # optional: Linux only
    findings.append(
        Finding(
            "Triton",
            triton or "not installed (optional)",
            True,
            "" if triton else "GPU kernels and notebook 09's kernel section need it (Linux only)",
        )
    )
    findings.append(Finding("Fast mode", "on" if config.fast_mode() else "off (full size)", True))
    findings.append(Finding("Data folder", _shown(config.data_dir()), True))
    findings.append(omniglot_status())
    return findings


def print_report(findings: list[Finding] | None = None) -> bool:
    """Print the report; return True when every finding is fine."""
    findings = report() if findings is None else findings
    width = max(len(f.item) for f in findings)
    for f in findings:
        line = f"{'ok ' if f.ok else 'FIX'} {f.item:<{width}}  {f.value}"
        shown = f.advice and (not f.ok or f.value == "not downloaded yet")
        print(line + (f"\n    -> {f.advice}" if shown else ""))
    return all(f.ok for f in findings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    return 0 if print_report() else 1
