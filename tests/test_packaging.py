"""pyproject.toml, environment.yml and the README tell the same story."""

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalize(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def pyproject_requirements() -> set[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {normalize(r) for r in reqs}


def environment_yml() -> tuple[set[str], str]:
    """The conda and pip requirements of environment.yml, and its Python requirement."""
    reqs, python = set(), ""
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        match = re.match(r"^\s+- (.+?)\s*$", line)
        if not match or line.strip().startswith("#"):
            continue
        item = match.group(1)
        if item.startswith("python"):
            python = normalize(item.removeprefix("python"))
        elif item == "pip" or item.startswith("-") or item == "pip:":
            continue
        else:
            reqs.add(normalize(item))
    return reqs, python


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    conda, python = environment_yml()
    assert conda == pyproject_requirements(), (
        f"only in environment.yml: {sorted(conda - pyproject_requirements())}; "
        f"only in pyproject.toml: {sorted(pyproject_requirements() - conda)}"
    )
    assert python == normalize(PYPROJECT["project"]["requires-python"])


def test_requirements_are_ranges_not_pins():
    specifiers = [r.split(";")[0] for r in pyproject_requirements()]  # markers may use ==
    pins = [r for r in specifiers if "==" in r]
    assert not pins, f"exact pins make installs break on new Pythons: {pins}"
    assert "torch>=2.4" in pyproject_requirements()


def test_readme_quick_start_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    assert block, "the quick start needs a shell code block"
    commands = [
        line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")
    ]
    assert [c.split("#")[0].strip() for c in commands] == ["make course", "make test"]


def test_ci_calls_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)
    assert "../shared/data/omniglot" in ci
