"""``python -m metalearn_edu train`` and ``evaluate`` end to end, at tiny sizes."""

from __future__ import annotations

import json

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.__main__ import main
from metalearn_edu.checkpoint import load_checkpoint, save_checkpoint
from metalearn_edu.models import Conv4
from metalearn_edu.presets import PRESETS, build_algorithm


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


TINY = [
    "--preset", "sinusoid", "--meta-batch-size", "3", "--eval-tasks", "6",
    "--validate-every", "2", "--validation-tasks", "3", "--no-progress", "--seed", "5",
]  # fmt: skip


def test_train_writes_checkpoint_and_json_then_resumes_and_evaluates(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    assert main(["train", *TINY, "--iterations", "2", "--checkpoint", str(ckpt)]) == 0
    first = json.loads(ckpt.with_suffix(".json").read_text())
    assert first["iterations_done"] == 2
    assert first["config"]["preset"] == "sinusoid" and first["config"]["seed"] == 5
    assert first["config"]["meta_batch_size"] == 3 and first["config"]["inner_lr"] == 0.01
    assert first["environment"]["torch"] == torch.__version__
    assert first["environment"]["device"] == "cpu"
    assert first["test"]["num_tasks"] == 6 and first["test"]["inner_steps"] == 10
    assert first["test"]["loss"] > 0 and first["test"]["loss_ci95"] > 0
    assert first["test"]["accuracy"] is None  # regression: no accuracy (NaN -> null)
    assert first["wall_time_s"] > 0

    out = tmp_path / "resumed.json"
    argv = ["train", *TINY, "--iterations", "4", "--checkpoint", str(ckpt), "--resume"]
    assert main([*argv, "--output", str(out)]) == 0
    resumed = json.loads(out.read_text())
    assert resumed["iterations_done"] == 4
    assert resumed["validation"]["iteration"] == [2, 4]
    assert load_checkpoint(ckpt)["iteration"] == 4

    assert main(["evaluate", "--checkpoint", str(ckpt), "--tasks", "7", "--inner-steps", "2"]) == 0
    evaluated = json.loads(ckpt.with_suffix(".eval-test.json").read_text())
    assert evaluated["iteration"] == 4
    assert evaluated["result"]["num_tasks"] == 7 and evaluated["result"]["inner_steps"] == 2
    printed = capsys.readouterr().out
    assert "test: 7 tasks, 2 steps: loss" in printed and "accuracy" not in printed


def test_evaluate_refuses_an_incompatible_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    main(["train", *TINY, "--iterations", "1", "--eval-tasks", "0", "--checkpoint", str(ckpt)])
    state = load_checkpoint(ckpt)
    state["meta_params"]["layer0.weight"] = torch.zeros(64, 1)
    save_checkpoint(ckpt, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(ValueError, match=r"layer0.weight has shape \(64, 1\) in the checkpoint"):
        main(["evaluate", "--checkpoint", str(ckpt), "--tasks", "2"])


def test_bad_settings_from_the_command_line_raise(tmp_path):
    ckpt = str(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="inner_lr must be a positive"):
        main(["train", *TINY, "--iterations", "1", "--inner-lr", "-1", "--checkpoint", ckpt])
    with pytest.raises(ValueError, match="inner_steps must be a positive"):
        main(["train", *TINY, "--iterations", "1", "--inner-steps", "0", "--checkpoint", ckpt])


@pytest.mark.parametrize(
    "preset,ways,shots,inner_lr,steps,test_steps,meta_batch",
    [
        ("omniglot-5w1s", 5, 1, 0.4, 1, 3, 32),
        ("omniglot-5w5s", 5, 5, 0.4, 1, 3, 32),
        ("omniglot-20w1s", 20, 1, 0.1, 5, 5, 16),
        ("omniglot-20w5s", 20, 5, 0.1, 5, 5, 16),
    ],
)
def test_omniglot_presets_carry_the_maml_paper_settings(
    preset, ways, shots, inner_lr, steps, test_steps, meta_batch
):
    config = PRESETS[preset]
    assert (config["ways"], config["shots"], config["inner_lr"]) == (ways, shots, inner_lr)
    assert (config["inner_steps"], config["test_inner_steps"]) == (steps, test_steps)
    assert config["meta_batch_size"] == meta_batch and config["iterations"] == 60_000
    assert config["meta_lr"] == 1e-3 and config["outer_optimizer"] == "adam"
    algorithm = build_algorithm(config)
    assert algorithm.model == Conv4(ways=ways, downsample="stride", transductive=True)
    assert (algorithm.inner_lr, algorithm.inner_steps) == (inner_lr, steps)


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        main(["train", *TINY, "--device", "cuda", "--checkpoint", str(tmp_path / "x.pt")])


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"]])
def test_help_texts_render(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: python -m metalearn_edu" in capsys.readouterr().out
