"""Project-wide pytest setup: which notebooks nbval runs, and how fast mode changes that.

``make test`` runs pytest with nbval on the solution notebooks (``notebooks/NN_*.ipynb``); the
student versions are executed by ``tests/test_notebooks.py`` instead, which accepts only the
exercise stubs' errors. In fast mode (``METALEARN_EDU_FAST=1``) a cell tagged ``size-dependent``
still runs and must not fail, but its output (a result whose value depends on the run's size) is
not compared with the stored full-size output.
"""

from __future__ import annotations

import pytest

from metalearn_edu.config import fast_mode

collect_ignore_glob = ["notebooks/student/*", "data/*", ".venv/*"]

SIZE_DEPENDENT = "size-dependent"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not fast_mode():
        return
    for item in items:
        cell = getattr(item, "cell", None)
        options = getattr(item, "options", None)
        if cell is not None and options is not None:
            if SIZE_DEPENDENT in cell.get("metadata", {}).get("tags", []):
                options["check"] = False
