"""Run-wide settings read from the environment: fast mode, data folders, seeding.

Fast mode (``METALEARN_EDU_FAST=1``) shrinks iteration counts so the whole course runs in CI in
minutes; without it the notebooks run at the size whose results their text discusses.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FAST_ENV = "METALEARN_EDU_FAST"
DATA_ENV = "METALEARN_EDU_DATA"
OMNIGLOT_ENV = "METALEARN_EDU_OMNIGLOT"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode() -> bool:
    """True when ``METALEARN_EDU_FAST`` is set to 1/true/yes/on (read on every call)."""
    value = os.environ.get(FAST_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV}={value!r} is not understood: set it to 1 (fast) or 0 (full size)."
    )


def size(default: int, fast: int) -> int:
    """Pick an iteration count: ``default`` normally, ``fast`` in fast mode.

    >>> size(2000, fast=50)  # doctest: +SKIP
    2000
    """
    if default < 1 or fast < 1:
        raise ValueError(f"size() needs positive counts, got default={default}, fast={fast}.")
    return fast if fast_mode() else default


def project_root() -> Path | None:
    """The repository root when the package runs from a source checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Where downloads and caches go: ``$METALEARN_EDU_DATA``, else ``<repo>/data``, else
    ``~/.cache/metalearn_edu``. The folder is created if missing."""
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
    elif (root := project_root()) is not None:
        path = root / "data"
    else:
        path = Path.home() / ".cache" / "metalearn_edu"
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and return a fresh ``torch.Generator`` seeded with ``seed``.

    Pass the returned generator to samplers: a seed then gives the same episodes on any machine.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds legacy global-state code too)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
