"""The end-to-end training benchmark runs every variant on the CPU and writes its JSON."""

from __future__ import annotations

import json

import pytest
from _maml_helpers import one_thread
from test_omniglot_tasks import fake_omniglot

from metalearn_edu import bench_training


def test_every_variant_runs_and_is_reported_against_the_step(tmp_path):
    output = tmp_path / "training.json"
    args = bench_training.build_parser().parse_args(
        ["--meta-batch", "2", "--iterations", "2", "--repeats", "1", "--output", str(output)]
    )
    with one_thread():
        report = bench_training.run(
            args, data=fake_omniglot(bg_alphabets=40, eval_alphabets=12, characters=25)
        )
    assert [r["variant"] for r in report["rows"]] == list(bench_training.VARIANTS)
    for row in report["rows"]:
        assert row["it_per_s"] > 0
        assert row["it_per_s"] == pytest.approx(1 / row["seconds_per_iteration"])
        assert row["fraction_of_step_speed"] == pytest.approx(
            row["it_per_s"] / report["rows"][0]["it_per_s"]
        )
    assert report["versions"]["torch"] and report["device"] == "cpu"
    json.dumps(report)  # plain JSON


def test_main_writes_the_file_and_refuses_unknown_variants(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_training, "load_omniglot", lambda: fake_omniglot(40, 12, 25))
    output = tmp_path / "t.json"
    argv = ["--meta-batch", "2", "--iterations", "1", "--repeats", "1", "--variants", "step"]
    with one_thread():
        assert bench_training.main([*argv, "--output", str(output)]) == 0
    assert json.loads(output.read_text())["rows"][0]["variant"] == "step"
    with pytest.raises(SystemExit, match="unknown variants"):
        bench_training.main(["--variants", "step,warp"])
