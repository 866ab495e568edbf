"""The course's notebooks: find them, run them, and build the student versions from one source.

Every notebook is written once, as the *solution* version ``notebooks/NN_name.ipynb``. Each
exercise is a code cell carrying nbgrader's metadata (``solution: true``) whose first line names
it (``# Exercise 0.1: ...``), with a ``# Hint: ...`` line and the solution between nbgrader's
markers::

    # Exercise 0.1: the sinusoid task
    def sinusoid(x, amplitude, phase):
        # Hint: y = A sin(x - phase), elementwise.
        ### BEGIN SOLUTION
        return amplitude * torch.sin(x - phase)
        ### END SOLUTION

The student version ``notebooks/student/NN_name.ipynb`` replaces each solution with a stub that
raises ``NotImplementedError`` carrying the exercise's name and hint, drops hidden tests
(``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``) and clears all outputs. Because the
markers and metadata are nbgrader's, a lecturer can also hand the solution notebooks to
``nbgrader generate_assignment`` unchanged.

Command line::

    python -m metalearn_edu build-students            # rebuild notebooks/student/
    python -m metalearn_edu build-students --check    # fail if a student notebook is stale
    python -m metalearn_edu build-students --execute  # re-run the solutions first, store outputs
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from nbformat import NotebookNode

if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
#: Every stub's message contains this phrase; the test suite uses it to tell a stub's
#: ``NotImplementedError`` from any other error.
STUB_PHRASE = "is yours to write"
MARKDOWN_STUB = "_Write your answer here._"
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
_EXERCISE_LINE = re.compile(r"^\s*#\s*(Exercise\s+[\w.]+)\s*:\s*(.+?)\s*$")
_HINT_LINE = re.compile(r"^\s*#\s*Hint:\s*(.+?)\s*$")


class NotebookFormatError(ValueError):
    """A source notebook breaks the exercise conventions; the message names notebook and cell."""


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the source checkout."""
    from metalearn_edu.config import project_root

    root = project_root()
    if root is None:
        raise FileNotFoundError(
            "The course's notebooks live in the source repository: clone it and run this from "
            "there (the installed package alone has no notebooks)."
        )
    return root / "notebooks"


def solution_notebooks(folder: Path | None = None) -> list[Path]:
    """The solution notebooks ``NN_name.ipynb`` of ``folder`` (default: the course), in order."""
    folder = notebooks_dir() if folder is None else Path(folder)
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def student_path(solution: Path) -> Path:
    return solution.parent / "student" / solution.name


def is_solution_cell(cell: NotebookNode) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution", False))


def is_check_cell(cell: NotebookNode) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("grade", False))


def _where(name: str, index: int) -> str:
    return f"{name}, cell {index}"


def _replace_regions(
    lines: list[str], begin: str, end: str, stub: str | None, where: str
) -> list[str]:
    """Replace every ``begin``..``end`` region (markers included) by ``stub`` (or nothing),
    indented like the ``begin`` marker."""
    out: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(begin):
            if inside:
                raise NotebookFormatError(f"{where}: '{begin}' opened twice without '{end}'.")
            inside = True
            if stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out.append(indent + stub + ("\n" if line.endswith("\n") else ""))
        elif stripped.startswith(end):
            if not inside:
                raise NotebookFormatError(f"{where}: '{end}' without a '{begin}' before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookFormatError(f"{where}: '{begin}' is never closed by '{end}'.")
    return out


def _code_stub(source: str, where: str) -> str:
    lines = source.splitlines()
    exercise = next((m for m in map(_EXERCISE_LINE.match, lines[:1]) if m), None)
    hints = [m.group(1) for m in map(_HINT_LINE.match, lines) if m]
    if exercise is None:
        raise NotebookFormatError(
            f"{where}: an exercise cell must start with a line '# Exercise N.M: title'."
        )
    if not hints:
        raise NotebookFormatError(f"{where}: an exercise cell needs a '# Hint: ...' line.")
    message = f"{exercise.group(1)} ({exercise.group(2)}) {STUB_PHRASE}. Hint: {' '.join(hints)}"
    return f"raise NotImplementedError({message!r})"


def make_student(nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return the student version of the solution notebook ``nb`` (``nb`` is not changed)."""
    student = copy.deepcopy(nb)
    solutions = 0
    for index, cell in enumerate(student.cells):
        where = _where(name, index)
        lines = cell.source.splitlines(keepends=True)
        if any(line.strip().startswith(BEGIN_HIDDEN) for line in lines):
            lines = _replace_regions(lines, BEGIN_HIDDEN, END_HIDDEN, None, where)
        has_solution = any(
            line.strip().startswith((BEGIN_SOLUTION, END_SOLUTION)) for line in lines
        )
        if has_solution != is_solution_cell(cell):
            raise NotebookFormatError(
                f"{where}: a cell with '{BEGIN_SOLUTION}' needs nbgrader metadata "
                "'solution: true', and a solution cell needs the markers."
            )
        if has_solution:
            solutions += 1
            stub = _code_stub(cell.source, where) if cell.cell_type == "code" else MARKDOWN_STUB
            lines = _replace_regions(lines, BEGIN_SOLUTION, END_SOLUTION, stub, where)
        source = "".join(lines)
        # a region that ended the cell must not leave a newline the source did not have
        cell.source = source if cell.source.endswith("\n") else source.rstrip("\n")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    if solutions == 0:
        raise NotebookFormatError(f"{name}: has no exercise; every notebook needs at least one.")
    banner = nbformat.v4.new_markdown_cell(
        f"> **Student version.** Made from `../{name}` by `python -m metalearn_edu "
        "build-students`: do not edit it here, edit the source. Each exercise raises "
        "`NotImplementedError` until you replace that line with your code; the cell after it "
        "checks your answer."
    )
    banner.pop("id", None)
    banner.metadata["metalearn_edu"] = {"banner": True}
    student.cells.insert(0, banner)
    return student


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_ids(nb: NotebookNode) -> None:
    """Give every cell a stable id derived from its position (nbformat 4.5 wants ids)."""
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"


def student_text(solution: Path) -> str:
    """The exact text of the student notebook built from ``solution``."""
    nb = nbformat.read(solution, as_version=4)
    student = make_student(nb, solution.name)
    _ensure_ids(student)
    return nbformat.writes(student) + "\n"


def build_students(folder: Path | None = None, check: bool = False) -> list[Path]:
    """Build (or with ``check``, only compare) every student notebook.

    Returns the student notebooks that were written (or, with ``check``, that are stale).
    """
    changed = []
    for solution in solution_notebooks(folder):
        target = student_path(solution)
        text = student_text(solution)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            changed.append(target)
            if not check:
                _write_atomic(target, text)
    return changed


def kernel_manager() -> KernelManager:
    """A kernel manager whose kernel runs on this very Python (the one with metalearn_edu)."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class _ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            return KernelSpec(argv=argv, display_name="Python 3", language="python")

    return KernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())


def execute(
    nb: NotebookNode, cwd: Path, timeout: int = 1800, allow_errors: bool = False
) -> NotebookNode:
    """Run every cell of ``nb`` in a fresh kernel in ``cwd``; outputs are stored in ``nb``."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=timeout,
        allow_errors=allow_errors,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def execute_in_place(path: Path, timeout: int = 1800) -> None:
    """Re-run a solution notebook and store its outputs (written atomically)."""
    nb = nbformat.read(path, as_version=4)
    execute(nb, path.parent, timeout=timeout)
    _ensure_ids(nb)
    _write_atomic(path, nbformat.writes(nb) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only report stale student notebooks")
    parser.add_argument(
        "--execute",
        nargs="*",
        metavar="NN",
        help="first re-run the solution notebooks (all, or those whose number is given) and "
        "store their outputs",
    )


def run(args: argparse.Namespace) -> int:
    if args.execute is not None:
        wanted = set(args.execute)
        for path in solution_notebooks():
            if not wanted or path.name[:2] in wanted:
                print(f"executing {path.name} ...", flush=True)
                execute_in_place(path)
    changed = build_students(check=args.check)
    names = ", ".join(p.name for p in changed) or "none"
    if args.check:
        if changed:
            print(f"stale student notebooks: {names}. Run: python -m metalearn_edu build-students")
            return 1
        print("all student notebooks are up to date")
        return 0
    print(f"student notebooks written: {names}")
    return 0
