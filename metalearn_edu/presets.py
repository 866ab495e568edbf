"""The papers' settings as plain data, and how to build a run from one.

A configuration is a flat ``dict`` of JSON values: a preset, updated by command-line overrides,
stored in every checkpoint and result file, and turned into objects by :func:`build_algorithm`
and :func:`build_tasks`. Settings from MAML (Finn et al. 2017, App. A and the official code):
Omniglot 5-way trains with 1 inner step at α = 0.4 and tests with 3, meta-batch 32; 20-way with
5 steps at α = 0.1, meta-batch 16; 60,000 Adam steps at 1e-3; stride-2 convolutions; K query
examples per class as in the code. Sinusoid: K = 10, 1 step at α = 0.01, meta-batch 25, 70,000
iterations, evaluated after up to 10 steps.
"""

from __future__ import annotations

from typing import Any

from metalearn_edu.algorithms import ALGORITHMS, MAML
from metalearn_edu.models import Conv4, sinusoid_mlp
from metalearn_edu.tasks.episode import TaskDistribution

COMMON: dict[str, Any] = {
    "algorithm": "maml",
    "first_order": False,
    "execution": "auto",
    "meta_lr": 1e-3,
    "outer_optimizer": "adam",
    "seed": 0,
    "eval_tasks": 600,
    "validate_every": 1000,
    "validation_tasks": 100,
}

PRESETS: dict[str, dict[str, Any]] = {
    "sinusoid": {
        **COMMON,
        "task": "sinusoid",
        "shots": 10,
        "queries": 10,
        "inner_lr": 0.01,
        "inner_steps": 1,
        "test_inner_steps": 10,
        "meta_batch_size": 25,
        "iterations": 70_000,
    },
    **{
        f"omniglot-{ways}w{shots}s": {
            **COMMON,
            "task": "omniglot",
            "ways": ways,
            "shots": shots,
            "queries": shots,
            "downsample": "stride",
            "transductive": True,
            "inner_lr": 0.4 if ways == 5 else 0.1,
            "inner_steps": 1 if ways == 5 else 5,
            "test_inner_steps": 3 if ways == 5 else 5,
            "meta_batch_size": 32 if ways == 5 else 16,
            "iterations": 60_000,
        }
        for ways in (5, 20)
        for shots in (1, 5)
    },
}


def build_algorithm(config: dict[str, Any]) -> MAML:
    """The algorithm (with its model) a configuration describes."""
    if config["task"] == "sinusoid":
        model = sinusoid_mlp()
    elif config["task"] == "omniglot":
        model = Conv4(
            ways=config["ways"],
            downsample=config["downsample"],
            transductive=config["transductive"],
        )
    else:
        raise ValueError(f"unknown task {config['task']!r}: expected 'sinusoid' or 'omniglot'.")
    if config["algorithm"] not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {config['algorithm']!r}: one of {sorted(ALGORITHMS)}.")
    kwargs = {
        "inner_lr": config["inner_lr"],
        "inner_steps": config["inner_steps"],
        "execution": config["execution"],
    }
    if config["algorithm"] in ("maml", "metasgd", "anil"):
        kwargs["first_order"] = config["first_order"]
    return ALGORITHMS[config["algorithm"]](model, **kwargs)


def build_tasks(config: dict[str, Any], device: str | None = None) -> dict[str, TaskDistribution]:
    """The train, val and test task distributions (Omniglot is loaded only when asked for)."""
    if config["task"] == "sinusoid":
        from metalearn_edu.tasks.sinusoid import SinusoidTasks

        tasks = SinusoidTasks(support_size=config["shots"], query_size=config["queries"])
        return {"train": tasks, "val": tasks, "test": tasks}
    from metalearn_edu.tasks.omniglot import omniglot_splits

    return omniglot_splits(
        ways=config["ways"],
        shots=config["shots"],
        queries=config["queries"],
        root=config.get("omniglot_root"),
        device=device,
    )
