"""Quality gates: ruff is clean, and the public API carries type hints."""

import importlib
import inspect
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import metalearn_edu

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [RUFF, *command, "metalearn_edu", "tests", "conftest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} found problems (run `make format`):\n{result.stdout[-4000:]}"
    )


def public_modules():
    for info in pkgutil.walk_packages(metalearn_edu.__path__, "metalearn_edu."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            yield importlib.import_module(info.name)


def public_functions():
    for module in public_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) and (
                        not attr.startswith("_") or attr == "__init__"
                    ):
                        yield f"{module.__name__}.{name}.{attr}", member


def test_public_api_has_type_hints():
    missing = []
    for qualname, fn in public_functions():
        sig = inspect.signature(fn)
        params = [
            p
            for p in sig.parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        unannotated = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if not qualname.endswith(".__init__") and sig.return_annotation is inspect.Signature.empty:
            unannotated.append("return")
        if unannotated:
            missing.append(f"{qualname}: {', '.join(unannotated)}")
    assert not missing, "public functions without type hints:\n" + "\n".join(missing)
