"""The exercise pipeline: student versions built from one source, in sync, and clean notebooks."""

import json
import re

import nbformat
import pytest

from metalearn_edu import course

NBGRADER_SOLUTION = {
    "grade": False,
    "grade_id": "ex1",
    "locked": False,
    "schema_version": 3,
    "solution": True,
    "task": False,
}
NBGRADER_CHECK = {
    "grade": True,
    "grade_id": "ex1_check",
    "locked": True,
    "points": 1,
    "schema_version": 3,
    "solution": False,
    "task": False,
}

SOLUTION_SOURCE = """# Exercise 1.2: the step
def step(theta, grad, lr):
    # Hint: move against the gradient.
    ### BEGIN SOLUTION
    new = theta - lr * grad
    return new
    ### END SOLUTION"""

CHECK_SOURCE = """check(step)
### BEGIN HIDDEN TESTS
secret_check(step)
### END HIDDEN TESTS"""


def make_notebook(solution=SOLUTION_SOURCE, metadata=NBGRADER_SOLUTION):
    nb = nbformat.v4.new_notebook()
    intro = nbformat.v4.new_markdown_cell("# 01 Test\n**Objectives.** x\n**CPU run time.** 1 s")
    code = nbformat.v4.new_code_cell(solution, metadata={"nbgrader": dict(metadata)})
    code.outputs = [nbformat.v4.new_output("stream", text="out")]
    code.execution_count = 3
    checker = nbformat.v4.new_code_cell(CHECK_SOURCE, metadata={"nbgrader": dict(NBGRADER_CHECK)})
    nb.cells = [intro, code, checker]
    return nb


def test_student_version_replaces_solution_with_an_indented_stub():
    student = course.make_student(make_notebook(), "01_test.ipynb")
    banner, _intro, code, checker = student.cells
    assert "Student version" in banner.source and "01_test.ipynb" in banner.source
    assert code.source == (
        "# Exercise 1.2: the step\n"
        "def step(theta, grad, lr):\n"
        "    # Hint: move against the gradient.\n"
        "    raise NotImplementedError('Exercise 1.2 (the step) is yours to write. Hint: move "
        "against the gradient.')"
    )
    assert code.outputs == [] and code.execution_count is None
    assert checker.source == "check(step)"
    assert code.metadata["nbgrader"] == NBGRADER_SOLUTION  # nbgrader metadata kept


def test_stub_raises_not_implemented_with_the_hint():
    code = course.make_student(make_notebook(), "x").cells[2].source
    namespace = {}
    exec(code, namespace)
    with pytest.raises(NotImplementedError, match=course.STUB_PHRASE + ". Hint: move against"):
        namespace["step"](1.0, 1.0, 0.1)


def test_source_notebook_is_not_modified():
    nb = make_notebook()
    before = json.dumps(nb, sort_keys=True)
    course.make_student(nb, "x")
    assert json.dumps(nb, sort_keys=True) == before


@pytest.mark.parametrize(
    ("source", "metadata", "message"),
    [
        (SOLUTION_SOURCE.replace("### END SOLUTION", ""), NBGRADER_SOLUTION, "never closed"),
        (SOLUTION_SOURCE.replace("    ### BEGIN SOLUTION\n", ""), NBGRADER_SOLUTION, "without a"),
        (SOLUTION_SOURCE, {"solution": False}, "needs nbgrader metadata"),
        (
            SOLUTION_SOURCE.replace("# Exercise 1.2: the step\n", ""),
            NBGRADER_SOLUTION,
            "must start with a line '# Exercise N.M: title'",
        ),
        (
            SOLUTION_SOURCE.replace("# Hint: move against the gradient.", "# move"),
            NBGRADER_SOLUTION,
            "needs a '# Hint: ...' line",
        ),
    ],
)
def test_malformed_exercises_are_refused_naming_notebook_and_cell(source, metadata, message):
    with pytest.raises(course.NotebookFormatError, match=message) as info:
        course.make_student(make_notebook(source, metadata), "07_bad.ipynb")
    assert "07_bad.ipynb, cell 1" in str(info.value)


def test_a_notebook_without_exercises_is_refused():
    nb = make_notebook()
    nb.cells = nb.cells[:1]
    with pytest.raises(course.NotebookFormatError, match="has no exercise"):
        course.make_student(nb, "x")


def test_build_and_check_round_trip(tmp_path):
    nbformat.write(make_notebook(), tmp_path / "01_test.ipynb")
    assert course.build_students(tmp_path, check=True) == [tmp_path / "student" / "01_test.ipynb"]
    assert course.build_students(tmp_path) == [tmp_path / "student" / "01_test.ipynb"]
    assert course.build_students(tmp_path, check=True) == []
    (tmp_path / "student" / "01_test.ipynb").write_text("{}")
    assert course.build_students(tmp_path, check=True) == [tmp_path / "student" / "01_test.ipynb"]


# --- the committed course -------------------------------------------------------------------

SOLUTIONS = course.solution_notebooks()
IDS = [p.name for p in SOLUTIONS]


def test_the_course_has_notebooks_numbered_in_order():
    assert SOLUTIONS, "no solution notebooks found in notebooks/"
    numbers = [int(p.name[:2]) for p in SOLUTIONS]
    assert numbers == list(range(len(numbers))), f"notebooks must be numbered 00, 01, ...: {IDS}"
    strays = [
        p.name
        for p in course.notebooks_dir().rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and p not in SOLUTIONS and p.parent.name != "student"
    ]
    assert not strays, f"notebooks that are not NN_name.ipynb: {strays}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_committed_student_notebook_is_what_the_builder_makes(solution):
    target = course.student_path(solution)
    assert target.exists(), f"{target.name} is missing: run python -m metalearn_edu build-students"
    assert target.read_text(encoding="utf-8") == course.student_text(solution), (
        f"notebooks/student/{solution.name} is out of sync with notebooks/{solution.name}: "
        "run python -m metalearn_edu build-students"
    )


def test_no_student_notebook_without_its_source():
    students = sorted((course.notebooks_dir() / "student").glob("*.ipynb"))
    assert [p.name for p in students] == IDS


ABSOLUTE_PATH = re.compile(r"(/(root|work|tmp|home|Users|mnt|opt)/|[A-Z]:\\\\)")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_notebook_hygiene(solution):
    nb = nbformat.read(solution, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {solution.name[:2]}"), (
        f"{solution.name}: the first cell must be a markdown title starting '# {solution.name[:2]}'"
    )
    for heading in ("**Objectives.**", "**Prerequisites.**", "**CPU run time.**"):
        assert heading in first.source, f"{solution.name}: the first cell must state {heading}"
    text = json.dumps(nb)
    assert not ABSOLUTE_PATH.search(text), f"{solution.name} contains an absolute path"
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{solution.name}: cells must be stored as run top to bottom in a fresh kernel "
        "(make notebooks)"
    )
    assert any(c.outputs for c in code), f"{solution.name} has no stored outputs"
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{solution.name}, cell {i}: stored error"
            plain = out.get("data", {}).get("text/plain", "")
            assert "<Figure size" not in plain, (
                f"{solution.name}, cell {i}: figure repr in the output; use "
                "metalearn_edu.display.show(fig)"
            )
    exercises = [c for c in code if course.is_solution_cell(c)]
    checks = [c for c in code if course.is_check_cell(c)]
    assert exercises and checks, f"{solution.name} needs exercises with self-check cells"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in exercises + checks]
    assert len(ids) == len(set(ids)), f"{solution.name}: nbgrader grade_ids must be unique"


def test_welcome_map_lists_every_notebook():
    welcome = nbformat.read(SOLUTIONS[0], as_version=4)
    text = "\n".join(c.source for c in welcome.cells if c.cell_type == "markdown")
    for path in SOLUTIONS:
        assert path.name in text, f"00_welcome's course map does not link {path.name}"
