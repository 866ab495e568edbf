"""The command line on lent machines: training in time-limited pieces, the paper's number beside
the result, and evaluating a run trained in another precision."""

from __future__ import annotations

import json

import pytest
from _maml_helpers import one_thread
from test_cli import TINY
from test_omniglot_tasks import fake_omniglot

from metalearn_edu import train_cli
from metalearn_edu.__main__ import main
from metalearn_edu.checkpoint import load_checkpoint, save_checkpoint
from metalearn_edu.tasks.omniglot import omniglot_splits


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_a_time_limited_piece_stops_with_a_checkpoint_and_the_last_piece_evaluates(
    tmp_path, capsys
):
    ckpt = tmp_path / "run.pt"
    argv = ["train", *TINY, "--iterations", "5", "--checkpoint", str(ckpt)]
    assert main([*argv, "--time-limit", "1e-9"]) == 0  # stops after one iteration
    piece = json.loads(ckpt.with_suffix(".json").read_text())
    assert piece["iterations_done"] == 1 and piece["finished"] is False
    assert "test" not in piece and load_checkpoint(ckpt)["iteration"] == 1
    first_piece_s = load_checkpoint(ckpt)["train_time_s"]
    assert first_piece_s > 0
    assert "stopped after --time-limit at iteration 1 of 5; continue with --resume" in (
        capsys.readouterr().out
    )

    assert main([*argv, "--resume", "--time-limit", "3600"]) == 0
    assert "trained iterations 1-5 in " in capsys.readouterr().out
    done = json.loads(ckpt.with_suffix(".json").read_text())
    assert done["iterations_done"] == 5 and done["finished"] is True
    assert done["test"]["num_tasks"] == 6
    # the total counts the training loops of both pieces (not each command's setup)
    assert done["train_wall_time_total_s"] > first_piece_s
    assert done["train_wall_time_total_s"] == load_checkpoint(ckpt)["train_time_s"]
    assert done["reported"] is None  # no paper reports the sinusoid at these settings


def test_an_omniglot_run_is_reported_beside_the_paper(tmp_path, monkeypatch, capsys):
    data = fake_omniglot(bg_alphabets=40, eval_alphabets=12, characters=25)
    monkeypatch.setattr(
        train_cli,
        "build_tasks",
        lambda config, device=None: omniglot_splits(
            config["ways"], config["shots"], config["queries"], data=data, device=device
        ),
    )
    ckpt = tmp_path / "omniglot.pt"
    argv = ["train", "--preset", "omniglot-5w1s", "--iterations", "1", "--meta-batch-size", "1"]
    argv += ["--eval-tasks", "2", "--validate-every", "0", "--no-progress"]
    assert main([*argv, "--checkpoint", str(ckpt)]) == 0
    result = json.loads(ckpt.with_suffix(".json").read_text())
    assert result["reported"] == {
        "accuracy_percent": 98.7,
        "ci95_percent": 0.4,
        "source": "Finn et al. 2017, Table 1",
    }
    assert "paper: 98.7 ± 0.4% (Finn et al. 2017, Table 1)" in capsys.readouterr().out


def test_a_tf32_run_is_evaluated_on_a_cpu_only_in_another_precision(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    main(["train", *TINY, "--iterations", "1", "--eval-tasks", "0", "--checkpoint", str(ckpt)])
    saved = load_checkpoint(ckpt)
    saved["config"]["precision"] = "tf32"  # as if trained on a GPU
    save_checkpoint(ckpt, {k: v for k, v in saved.items() if k != "format"})
    with pytest.raises(SystemExit, match=r"needs a CUDA device.*choose another with --precision"):
        main(["evaluate", "--checkpoint", str(ckpt), "--tasks", "2"])
    argv = ["evaluate", "--checkpoint", str(ckpt), "--tasks", "2", "--precision", "float32"]
    assert main(argv) == 0
    report = json.loads(ckpt.with_suffix(".eval-test.json").read_text())
    assert report["config"]["precision"] == "float32" and report["result"]["num_tasks"] == 2


def test_train_runs_where_the_course_packages_are_missing(tmp_path):
    """A GPU machine has PyTorch but not nbformat (build-students) or ipywidgets: `train` and
    `evaluate` must not import them."""
    import subprocess
    import sys

    blocked = "import sys; sys.modules.update(nbformat=None, ipywidgets=None, nbval=None); "
    code = blocked + "from metalearn_edu.__main__ import main; raise SystemExit(main())"
    argv = ["train", *TINY, "--iterations", "1", "--eval-tasks", "0"]
    argv += ["--checkpoint", str(tmp_path / "run.pt")]
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    for command in (["--help"], ["evaluate", "--help"]):
        out = subprocess.run(
            [sys.executable, "-c", code, *command], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [sys.executable, "-c", code, "build-students", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0 and "nbformat" in out.stderr  # the block is real


def test_vmap_chunks_from_the_command_line(tmp_path):
    ckpt = tmp_path / "run.pt"
    argv = ["train", *TINY, "--iterations", "1", "--eval-tasks", "0", "--execution", "vmap"]
    assert main([*argv, "--vmap-chunk-size", "2", "--checkpoint", str(ckpt)]) == 0
    assert json.loads(ckpt.with_suffix(".json").read_text())["config"]["vmap_chunk_size"] == 2
    with pytest.raises(ValueError, match="vmap_chunk_size must be positive"):
        main([*argv, "--vmap-chunk-size", "0", "--checkpoint", str(tmp_path / "bad.pt")])
