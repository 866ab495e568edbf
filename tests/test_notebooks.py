"""Notebooks as a student meets them, and what happens when a solution breaks.

(The solution notebooks themselves run under nbval: ``make test`` collects ``notebooks/*.ipynb``.)
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from metalearn_edu import course

pytestmark = pytest.mark.notebook

SOLUTIONS = course.solution_notebooks()
IDS = [p.name for p in SOLUTIONS]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_student_notebook_fails_only_at_the_exercise_stubs(solution):
    student = course.student_path(solution)
    nb = nbformat.read(student, as_version=4)
    course.execute(nb, student.parent, allow_errors=True)
    stubbed = 0
    for index, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        for error in errors:
            assert error.ename == "NotImplementedError" and course.STUB_PHRASE in error.evalue, (
                f"student/{student.name}, cell {index} raised {error.ename}: {error.evalue}\n"
                "only an unfinished exercise may raise in the student version"
            )
        if course.is_solution_cell(cell) and cell.cell_type == "code":
            stubbed += 1
            # the stub raises when the exercise's code runs, either in its own cell (a
            # top-level statement) or in the check cell that calls it
        if course.is_check_cell(cell):
            assert errors, (
                f"student/{student.name}, cell {index}: the self-check passed with the exercise "
                "left as a stub, so it checks nothing"
            )
    assert stubbed, f"student/{student.name} has no exercise"


def test_a_broken_solution_fails_the_suite_naming_notebook_and_cell(tmp_path):
    source = SOLUTIONS[0]
    nb = nbformat.read(source, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if course.is_solution_cell(c))
    cell = nb.cells[index]
    lines = cell.source.splitlines()
    end = next(i for i, line in enumerate(lines) if course.END_SOLUTION in line)
    ret = max(i for i in range(end) if lines[i].strip().startswith("return "))
    indent = re.match(r"\s*", lines[ret]).group(0)
    # Break the solution: it now returns a wrong (but well-formed) value.
    lines[ret] = f"{indent}return 0.5 * ({lines[ret].strip().removeprefix('return ')})"
    cell.source = "\n".join(lines)
    broken = tmp_path / source.name
    nbformat.write(nb, broken)
    shutil.copy(ROOT / "tests" / "nbval_sanitize.cfg", tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(tmp_path / "nbval_sanitize.cfg"),
            str(broken),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the broken notebook passed:\n{output[-3000:]}"
    assert f"{source.name}::Cell" in output, output[-3000:]
    assert "CheckFailed" in output and "Hint:" in output, output[-3000:]
