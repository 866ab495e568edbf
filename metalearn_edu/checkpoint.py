"""Saving and resuming meta-training.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no code runs on load). It holds everything that decides what
happens next (meta-parameters, the outer optimiser's state, the task sampler's generator state,
the iteration, the metrics so far, and the run's configuration), so a resumed run produces the
same numbers as one that never stopped. Writes are atomic: a temporary file in the same folder,
then ``os.replace``, so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FORMAT = "metalearn_edu.checkpoint/1"


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (plain data and tensors) atomically, tagged with the checkpoint format."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable metalearn_edu checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (found {found!r}).")
    return state


def check_compatible(
    saved: dict[str, Tensor], expected: dict[str, Tensor], source: str = ""
) -> None:
    """Raise a ``ValueError`` listing every missing, unexpected or reshaped parameter."""
    problems = []
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing:
        problems.append(f"missing parameters {missing}")
    if unexpected:
        problems.append(f"unexpected parameters {unexpected}")
    for name in sorted(set(saved) & set(expected)):
        if saved[name].shape != expected[name].shape:
            problems.append(
                f"{name} has shape {tuple(saved[name].shape)} in the checkpoint but "
                f"{tuple(expected[name].shape)} in the model"
            )
    if problems:
        where = f" {source}" if source else ""
        raise ValueError(
            f"checkpoint{where} does not fit this model/algorithm: " + "; ".join(problems) + "."
        )
