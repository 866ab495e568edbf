"""``python -m metalearn_edu train/evaluate`` for the learned update rules: Meta-SGD, ANIL and the
Meta-LSTM, at tiny sizes (sinusoid tasks; the Omniglot presets are checked without data)."""

from __future__ import annotations

import json

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.__main__ import main
from metalearn_edu.algorithms import ANIL, MetaSGD
from metalearn_edu.meta_lstm import MetaLSTM
from metalearn_edu.models import Conv4
from metalearn_edu.presets import PRESETS, build_algorithm


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


TINY = [
    "--preset", "sinusoid", "--meta-batch-size", "2", "--eval-tasks", "4", "--iterations", "2",
    "--validate-every", "0", "--inner-steps", "2", "--no-progress", "--seed", "3",
]  # fmt: skip


@pytest.mark.parametrize(
    "algorithm,kind", [("metasgd", MetaSGD), ("anil", ANIL), ("metalstm", MetaLSTM)]
)
def test_train_then_evaluate_each_update_rule(algorithm, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METALEARN_EDU_DATA", str(tmp_path))
    assert main(["train", *TINY, "--algorithm", algorithm]) == 0
    ckpt = tmp_path / "runs" / f"sinusoid-{algorithm}-seed3.pt"  # not the MAML run's name
    result = json.loads(ckpt.with_suffix(".json").read_text())
    assert result["config"]["algorithm"] == algorithm and result["iterations_done"] == 2
    assert result["test"]["num_tasks"] == 4 and result["test"]["loss"] > 0
    assert isinstance(build_algorithm(result["config"]), kind)

    assert main(["evaluate", "--checkpoint", str(ckpt), "--tasks", "3", "--inner-steps", "1"]) == 0
    evaluated = json.loads(ckpt.with_suffix(".eval-test.json").read_text())
    assert evaluated["result"]["num_tasks"] == 3 and evaluated["result"]["inner_steps"] == 1
    assert "test: 3 tasks, 1 steps: loss" in capsys.readouterr().out


def test_maml_keeps_its_default_checkpoint_name(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_EDU_DATA", str(tmp_path))
    assert main(["train", *TINY, "--eval-tasks", "0", "--iterations", "1"]) == 0
    assert (tmp_path / "runs" / "sinusoid-seed3.pt").is_file()


@pytest.mark.parametrize("shots,steps,episodes", [(1, 12, 75_000), (5, 8, 50_000)])
def test_meta_lstm_presets_carry_the_official_settings(shots, steps, episodes):
    config = PRESETS[f"metalstm-omniglot-5w{shots}s"]
    assert (config["inner_steps"], config["test_inner_steps"]) == (steps, steps)
    assert config["iterations"] == episodes and config["meta_batch_size"] == 1
    assert config["queries"] == 15 and config["meta_lr"] == 1e-3
    algorithm = build_algorithm(config)
    assert isinstance(algorithm, MetaLSTM)
    assert (algorithm.hidden, algorithm.clip_norm, algorithm.inner_steps) == (20, 0.25, steps)
    assert algorithm.model == Conv4(ways=5, downsample="maxpool", hidden=32, transductive=False)
    params = algorithm.init_meta_params(torch.Generator().manual_seed(0))
    assert params["learner.block0.conv.weight"].shape == (32, 1, 3, 3)


def test_an_unknown_algorithm_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="'metalstm'"):
        main(["train", *TINY, "--algorithm", "lstm", "--checkpoint", str(tmp_path / "x.pt")])
