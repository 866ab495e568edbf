"""The benchmark's own checks run (the timing itself is not a test)."""

from __future__ import annotations

import pytest
from _maml_helpers import one_thread

from metalearn_edu import bench


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_benchmark_checks_gradients_and_times_a_small_workload():
    spec = {"workload": "sinusoid", "meta_batch": 3, "inner_steps": 2, "first_order": False}
    diffs = bench.check_gradients(spec, "cpu")
    assert set(diffs) == {"loop", "functional", "vmap"}
    assert all(d <= bench.GRADIENT_RTOL for d in diffs.values())
    timing = bench.time_variant(spec, "vmap", "cpu", repeats=2)
    assert timing["it_per_s"] > 0 and timing["max_rss_mb"] > 0
    assert bench.time_variant(spec, "none", "cpu", repeats=0).keys() == {"max_rss_mb"}


def test_benchmark_covers_the_paper_workloads():
    specs = bench.variants(32)
    omniglot = [s for s in specs if s["workload"] == "omniglot-5w1s"]
    assert {(s["inner_steps"], s["first_order"]) for s in omniglot} == {
        (1, False), (1, True), (5, False), (5, True)
    }  # fmt: skip
    assert all(s["meta_batch"] == 32 for s in omniglot)
    assert any(s["workload"] == "sinusoid" and s["meta_batch"] == 25 for s in specs)
    with pytest.raises(ValueError, match="unknown workload"):
        bench.workload("mnist", 1, 1, False, "loop")
