"""Accuracies the papers report for our presets, so that every result can be read beside its source.

Percent, mean ± 95% interval over test tasks, as printed in the papers (``../shared/reference/
papers.md`` has the tables and their provenance):

- MAML (Finn et al. 2017, Table 1): Omniglot with the conv network, transductive batch norm.
- First-order MAML on Omniglot: the MAML paper reports first-order results only for
  MiniImagenet; the Omniglot row is the Reptile paper's (Nichol et al. 2018, Table 2,
  "1st-order MAML + Transduction").
- Meta-SGD (Li et al. 2017), Omniglot: as quoted by T-NAS (ICLR 2020, Table 2); the 20-way ±
  values are not confirmed from the paper itself.
"""

from __future__ import annotations

from typing import Any

from metalearn_edu.presets import PRESETS

# (preset, algorithm, first_order) -> (accuracy %, ± 95% interval %, source)
REPORTED: dict[tuple[str, str, bool], tuple[float, float, str]] = {
    ("omniglot-5w1s", "maml", False): (98.7, 0.4, "Finn et al. 2017, Table 1"),
    ("omniglot-5w5s", "maml", False): (99.9, 0.1, "Finn et al. 2017, Table 1"),
    ("omniglot-20w1s", "maml", False): (95.8, 0.3, "Finn et al. 2017, Table 1"),
    ("omniglot-20w5s", "maml", False): (98.9, 0.2, "Finn et al. 2017, Table 1"),
    ("omniglot-5w1s", "maml", True): (98.3, 0.5, "Nichol et al. 2018, Table 2"),
    ("omniglot-5w5s", "maml", True): (99.2, 0.2, "Nichol et al. 2018, Table 2"),
    ("omniglot-20w1s", "maml", True): (89.4, 0.5, "Nichol et al. 2018, Table 2"),
    ("omniglot-20w5s", "maml", True): (97.9, 0.1, "Nichol et al. 2018, Table 2"),
    ("omniglot-5w1s", "metasgd", False): (99.53, 0.26, "Li et al. 2017, via T-NAS Table 2"),
    ("omniglot-5w5s", "metasgd", False): (99.93, 0.09, "Li et al. 2017, via T-NAS Table 2"),
    ("omniglot-20w1s", "metasgd", False): (95.93, 0.38, "Li et al. 2017, via T-NAS Table 2"),
    ("omniglot-20w5s", "metasgd", False): (98.97, 0.19, "Li et al. 2017, via T-NAS Table 2"),
}


def reported_accuracy(config: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's accuracy for a run's configuration, or None where no paper reports one.

    Only runs with the paper's protocol match: the preset's algorithm, ways, shots and test-time
    steps unchanged (``fomaml`` counts as MAML with ``first_order``).
    """
    preset = PRESETS.get(config.get("preset", ""))
    if preset is None:
        return None
    if any(config.get(k, preset.get(k)) != preset.get(k) for k in ("ways", "shots", "task")):
        return None
    if config.get("test_inner_steps", preset.get("test_inner_steps")) != preset.get(
        "test_inner_steps"
    ):
        return None
    algorithm = config.get("algorithm", preset["algorithm"])
    first_order = bool(config.get("first_order", False)) or algorithm == "fomaml"
    key = (config["preset"], "maml" if algorithm == "fomaml" else algorithm, first_order)
    if key not in REPORTED:
        return None
    accuracy, ci95, source = REPORTED[key]
    return {"accuracy_percent": accuracy, "ci95_percent": ci95, "source": source}


def beside_the_paper(result: dict[str, Any]) -> str:
    """One line for a ``train`` result file: how far the run got, on what, its test accuracy with
    its 95% interval, and the paper's where the protocol is the paper's."""
    env, config = result["environment"], result["config"]
    line = (
        f"{config['preset']} {config['algorithm']}: {result['iterations_done']:,} of "
        f"{config['iterations']:,} meta-iterations, "
        f"{result.get('train_wall_time_total_s', result['train_wall_time_s']) / 60:.1f} min of "
        f"training on {env.get('device_name', env['device'])} (torch {env['torch']}, "
        f"{config.get('precision', 'float32')})"
    )
    test = result.get("test")
    if test and test.get("accuracy") is not None:
        line += (
            f"; test accuracy {100 * test['accuracy']:.1f} ± {100 * test['accuracy_ci95']:.1f}% "
            f"over {test['num_tasks']} tasks"
        )
    elif not result.get("finished", True):
        line += "; not finished (resume it)"
    reported = result.get("reported")
    if reported:
        line += (
            f"; paper {reported['accuracy_percent']} ± {reported['ci95_percent']}% "
            f"({reported['source']})"
        )
    return line
