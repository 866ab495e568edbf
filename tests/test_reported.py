"""The papers' accuracies beside our presets: the numbers match the reference tables, and only
runs with the paper's protocol are compared with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metalearn_edu.presets import PRESETS
from metalearn_edu.reported import REPORTED, beside_the_paper, reported_accuracy

PAPERS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "papers.md"
COLUMNS = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s")


def _row(text: str, label: str) -> list[tuple[float, float]]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
    return [(float(a), float(b)) for a, b in re.findall(r"([\d.]+) ± ([\d.]+)", line)]


@pytest.mark.skipif(not PAPERS.is_file(), reason="../shared/reference/papers.md not present")
def test_the_numbers_are_the_reference_tables():
    text = PAPERS.read_text()
    rows = {
        ("maml", False): _row(text, "**MAML (conv)**"),
        ("maml", True): _row(text, "**First-order MAML (FOMAML)**"),
        ("metasgd", False): [*_row(text, "Omniglot 5-way"), *_row(text, "Omniglot 20-way")],
    }
    for (algorithm, first_order), values in rows.items():
        assert len(values) == 4
        for preset, (accuracy, ci95) in zip(COLUMNS, values, strict=True):
            assert REPORTED[(preset, algorithm, first_order)][:2] == (accuracy, ci95)


def test_every_entry_names_a_preset_and_a_source():
    for preset, algorithm, _ in REPORTED:
        assert preset in PRESETS and algorithm in ("maml", "metasgd")
    assert all(source for *_, source in REPORTED.values())


def test_only_the_papers_protocol_is_compared():
    paper = {**PRESETS["omniglot-5w1s"], "preset": "omniglot-5w1s"}
    assert reported_accuracy(paper) == {
        "accuracy_percent": 98.7,
        "ci95_percent": 0.4,
        "source": "Finn et al. 2017, Table 1",
    }
    assert reported_accuracy({**paper, "iterations": 100})["accuracy_percent"] == 98.7
    assert reported_accuracy({**paper, "first_order": True})["accuracy_percent"] == 98.3
    assert reported_accuracy({**paper, "algorithm": "fomaml"})["accuracy_percent"] == 98.3
    assert reported_accuracy({**paper, "algorithm": "metasgd"})["accuracy_percent"] == 99.53
    for changed in ({"ways": 4}, {"shots": 2}, {"test_inner_steps": 1}, {"algorithm": "anil"}):
        assert reported_accuracy({**paper, **changed}) is None
    assert reported_accuracy({**PRESETS["sinusoid"], "preset": "sinusoid"}) is None
    assert reported_accuracy({"preset": "no-such-preset"}) is None


def test_a_result_is_described_beside_the_paper():
    config = {**PRESETS["omniglot-5w1s"], "preset": "omniglot-5w1s", "precision": "tf32"}
    result = {
        "config": config,
        "environment": {"device": "cuda", "device_name": "NVIDIA H200", "torch": "2.11.0"},
        "iterations_done": 60_000,
        "finished": True,
        "train_wall_time_s": 100.0,
        "train_wall_time_total_s": 540.0,
        "test": {"accuracy": 0.98712, "accuracy_ci95": 0.00391, "num_tasks": 600},
        "reported": reported_accuracy(config),
    }
    assert beside_the_paper(result) == (
        "omniglot-5w1s maml: 60,000 of 60,000 meta-iterations, 9.0 min of training on NVIDIA "
        "H200 (torch 2.11.0, tf32); test accuracy 98.7 ± 0.4% over 600 tasks; paper 98.7 ± 0.4% "
        "(Finn et al. 2017, Table 1)"
    )
    piece = {**result, "iterations_done": 20_000, "finished": False, "reported": None}
    del piece["test"]
    assert beside_the_paper(piece).endswith("(torch 2.11.0, tf32); not finished (resume it)")
