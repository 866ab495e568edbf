"""When a Triton kernel runs, and when its PyTorch reference does.

Every kernel in :mod:`metalearn_edu.kernels` comes as a pair: a PyTorch *reference* (plain tensor
code, the definition a test compares against) and a Triton kernel wrapped in an autograd function.
By default (``use_triton=None``) the kernel runs when

- Triton can be imported,
- it is not switched off with ``METALEARN_EDU_TRITON=0`` in the environment, and
- the tensors are on a CUDA device.

Otherwise the reference runs, and also while ``torch.compile`` traces the code and inside
:func:`reference_only` (the compiler fuses the reference itself). ``use_triton=False`` always
runs the reference; ``use_triton=True`` asks for the kernel, also on CPU tensors when
``TRITON_INTERPRET=1`` is set: Triton's interpreter runs the kernel's Python body with NumPy, which
is how the test suite and notebook 09 check every kernel on a machine without a GPU. It is far
slower than PyTorch, a checking tool only, so it is never chosen automatically.
``TRITON_INTERPRET`` is read by ``triton.jit`` when a kernel module is imported, so set it before
importing :mod:`metalearn_edu.kernels`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

ENV_SWITCH = "METALEARN_EDU_TRITON"
_reference_only_depth = 0  # > 0 inside reference_only()


@contextmanager
def reference_only() -> Iterator[None]:
    """Inside, ``use_triton=None`` picks the PyTorch reference everywhere (explicit ``True`` still
    runs the kernel). For code that ``torch.compile`` traces: Inductor fuses the reference, and
    a Triton launch it meets after a graph break would be handed to Dynamo frame by frame (on an
    H200 with torch 2.11 that failed inside the kernel's vmap rule)."""
    global _reference_only_depth
    _reference_only_depth += 1
    try:
        yield
    finally:
        _reference_only_depth -= 1


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (it ships for Linux only)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton kernels run in the interpreter (``TRITON_INTERPRET=1``), on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(*tensors: Tensor, use_triton: bool | None = None) -> bool:
    """Decide whether the Triton kernel runs for ``tensors`` (see the module docstring).

    ``use_triton=True`` asks for the kernel and raises a ``RuntimeError`` that says why when it
    cannot run; ``False`` forces the reference; ``None`` (the default) picks automatically.
    """
    if use_triton is False:
        return False
    if use_triton is None and (_reference_only_depth or torch.compiler.is_compiling()):
        return False  # traced code: the compiler fuses the reference itself
    if use_triton is None and any(t.device.type != "cuda" for t in tensors):
        return False  # the interpreter is never picked automatically
    reason = _why_not(tensors)
    if reason is None:
        return True
    if use_triton:
        raise RuntimeError(f"the Triton kernel cannot run here: {reason}.")
    return False


def _why_not(tensors: tuple[Tensor, ...]) -> str | None:
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"{ENV_SWITCH}=0 is set"
    if not triton_available():
        return "triton is not installed (pip install triton; Linux only)"
    devices = {t.device.type for t in tensors}
    if devices == {"cuda"}:
        return None
    if devices == {"cpu"}:
        if interpreting():
            return None
        return "the tensors are on the CPU; set TRITON_INTERPRET=1 before importing to interpret"
    return f"the tensors are on {sorted(devices)}; the kernels need all of them on one CUDA device"
