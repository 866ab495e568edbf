"""Self-checks for the course's exercises: immediate, readable feedback, never a bare ``assert``.

A check calls the student's function on a few named inputs, compares each result with the
library's reference, and either prints one line per case that passed or raises
:class:`CheckFailed` with what was wrong, on which input, and a hint::

    from metalearn_edu import check
    check.function(student_sinusoid, reference=sinusoid, cases=[...], name="Exercise 0.1",
                   hint="y = A sin(x - phase), elementwise")

An exercise left as its stub raises ``NotImplementedError``; the check lets it through unchanged,
so the notebook says plainly that the exercise is still to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


class CheckFailed(AssertionError):
    """An exercise's result is wrong. The message says on which input, how, and what to try."""


@dataclass
class Case:
    """One input to try: positional ``args``, keyword ``kwargs`` and a label shown in messages."""

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [_short(a) for a in self.args] + [
            f"{k}={_short(v)}" for k, v in self.kwargs.items()
        ]
        return "(" + ", ".join(parts) + ")"


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 6:
            text = f"tensor({value.tolist()})"
        else:
            dtype = str(value.dtype).removeprefix("torch.")
            text = f"tensor of shape {tuple(value.shape)}, dtype {dtype}"
    elif isinstance(value, np.ndarray):
        text = f"array({value.tolist()})" if value.size <= 6 else f"array of shape {value.shape}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_case(case: Case | tuple | Mapping) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, Mapping):
        return Case(kwargs=dict(case))
    if isinstance(case, tuple):
        return Case(args=case)
    return Case(args=(case,))


def compare(got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-8) -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying how it differs.

    Tensors and arrays are compared by type, shape and value (with tolerances); sequences and
    mappings element by element; numbers with tolerances; anything else with ``==``.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor but got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"expected shape {tuple(expected.shape)} but got shape {tuple(got.shape)}"
        if expected.is_floating_point() and not got.is_floating_point():
            return f"expected a floating-point tensor but got dtype {got.dtype}"
        g, e = got.detach().to(torch.float64).cpu(), expected.detach().to(torch.float64).cpu()
        if g.shape == e.shape and torch.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
            return None
        diff = torch.nan_to_num((g - e).abs(), nan=math.inf)
        flat = int(diff.argmax())
        where = tuple(int(i) for i in np.unravel_index(flat, tuple(e.shape)))
        at = f" at index {where}" if where else ""
        return (
            f"values differ{at}: got {g.flatten()[flat].item():.6g}, expected "
            f"{e.flatten()[flat].item():.6g} (largest difference {diff.max().item():.3g})"
        )
    if isinstance(expected, np.ndarray):
        if isinstance(got, (np.ndarray, list)):
            got = torch.as_tensor(np.asarray(got))
        return compare(got, torch.as_tensor(expected), rtol=rtol, atol=atol)
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if got == expected else f"expected {expected!r} but got {_short(got)}"
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"expected a number but got {type(got).__name__}"
        if math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or (
            math.isnan(got) and math.isnan(expected)
        ):
            return None
        return f"expected {expected:.6g} but got {got:.6g}"
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"expected a mapping but got {type(got).__name__}"
        if set(got) != set(expected):
            return f"expected keys {sorted(expected)} but got keys {sorted(got)}"
        for key in expected:
            problem = compare(got[key], expected[key], rtol=rtol, atol=atol)
            if problem:
                return f"at key {key!r}: {problem}"
        return None
    if isinstance(expected, Sequence):
        if not isinstance(got, Sequence) or isinstance(got, str):
            return f"expected a sequence of length {len(expected)} but got {type(got).__name__}"
        if len(got) != len(expected):
            return f"expected {len(expected)} items but got {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            problem = compare(g, e, rtol=rtol, atol=atol)
            if problem:
                return f"at item {i}: {problem}"
        return None
    return None if got == expected else f"expected {_short(expected)} but got {_short(got)}"


def function(
    student: Callable[..., Any],
    *,
    reference: Callable[..., Any],
    cases: Iterable[Case | tuple | Mapping],
    name: str,
    hint: str,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> None:
    """Check ``student`` against ``reference`` on every case; print a summary or raise.

    Raises :class:`CheckFailed` at the first case whose result differs (or that raises an
    unexpected error), naming the exercise, the input, the difference and ``hint``.
    """
    cases = [_as_case(c) for c in cases]
    if not cases:
        raise ValueError("check.function needs at least one case to try.")
    for i, case in enumerate(cases, start=1):
        expected = reference(*case.args, **case.kwargs)
        try:
            got = student(*case.args, **case.kwargs)
        except NotImplementedError:
            raise
        except Exception as exc:  # the student's code crashed: say where, keep the cause
            raise CheckFailed(
                f"{name}: case {i} of {len(cases)}, input {case.describe()}: your function raised "
                f"{type(exc).__name__}: {exc}\nHint: {hint}"
            ) from exc
        problem = compare(got, expected, rtol=rtol, atol=atol)
        if problem:
            where = f"case {i} of {len(cases)}, input {case.describe()}"
            raise CheckFailed(f"{name}: {where}: {problem}.\nHint: {hint}")
    passed(name, f"{len(cases)} of {len(cases)} cases agree with the reference")


def value(
    got: Any,
    expected: Any,
    *,
    name: str,
    what: str,
    hint: str,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> None:
    """Check one computed value (``what`` describes it) against ``expected``."""
    problem = compare(got, expected, rtol=rtol, atol=atol)
    if problem:
        raise CheckFailed(f"{name}: {what}: {problem}.\nHint: {hint}")
    passed(name, what)


def that(condition: bool, *, name: str, what: str, hint: str) -> None:
    """Check a property that has no single expected value (``what`` states the property)."""
    if not condition:
        raise CheckFailed(f"{name}: expected {what}, but it does not hold.\nHint: {hint}")
    passed(name, what)


def passed(name: str, detail: str) -> None:
    """Print the one-line success message every check ends with."""
    print(f"✔ {name} passed: {detail}.")
