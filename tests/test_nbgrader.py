"""A lecturer can run the solution notebooks through nbgrader 0.9 unchanged."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metalearn_edu import course

pytestmark = pytest.mark.notebook

ASSIGNMENT = "course"
STUDENT = "ada"
LAZY_STUDENT = "bob"


def nbgrader(course_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course_dir,
        capture_output=True,
        text=True,
        timeout=1800,
        # nbgrader runs the `alembic` command of its environment, found on PATH
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{output[-4000:]}"
    return output


def test_nbgrader_generates_and_autogrades_the_solutions_with_full_marks(tmp_path):
    pytest.importorskip("nbgrader")
    solutions = course.solution_notebooks()
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'metalearn_edu'\n"
        f"c.CourseDirectory.root = {str(tmp_path)!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{tmp_path / 'gradebook.db'}'\n"
        "c.ExecutePreprocessor.timeout = 1800\n"
    )
    source = tmp_path / "source" / ASSIGNMENT
    submitted = tmp_path / "submitted" / STUDENT / ASSIGNMENT
    unfinished = tmp_path / "submitted" / LAZY_STUDENT / ASSIGNMENT
    for folder in (source, submitted, unfinished):
        folder.mkdir(parents=True)
    for path in solutions:
        shutil.copy(path, source / path.name)
        shutil.copy(path, submitted / path.name)  # one student hands in the solutions,
        shutil.copy(course.student_path(path), unfinished / path.name)  # one the stubs

    nbgrader(tmp_path, "db", "student", "add", STUDENT)
    nbgrader(tmp_path, "db", "student", "add", LAZY_STUDENT)
    nbgrader(tmp_path, "generate_assignment", ASSIGNMENT, "--force")
    released = sorted(p.name for p in (tmp_path / "release" / ASSIGNMENT).glob("*.ipynb"))
    assert released == [p.name for p in solutions]
    for path in (tmp_path / "release" / ASSIGNMENT).glob("*.ipynb"):
        text = path.read_text()
        assert course.BEGIN_SOLUTION not in text and "BEGIN HIDDEN TESTS" not in text

    nbgrader(tmp_path, "autograde", ASSIGNMENT, "--force")

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, STUDENT)
        assert submission.max_score > 0
        per_notebook = {nb.name: (nb.score, nb.max_score) for nb in submission.notebooks}
        assert submission.score == submission.max_score, f"scores: {per_notebook}"
        stubs = gb.find_submission(ASSIGNMENT, LAZY_STUDENT)
        assert stubs.score == 0, "the self-checks gave points to unfinished exercises"
