"""The papers' settings as plain data, and how to build a run from one.

A configuration is a flat ``dict`` of JSON values: a preset, updated by command-line overrides,
stored in every checkpoint and result file, and turned into objects by :func:`build_algorithm`
and :func:`build_tasks`. Settings from MAML (Finn et al. 2017, App. A and the official code):
Omniglot 5-way trains with 1 inner step at α = 0.4 and tests with 3, meta-batch 32; 20-way with
5 steps at α = 0.1, meta-batch 16; 60,000 Adam steps at 1e-3; stride-2 convolutions; K query
examples per class as in the code. Sinusoid: K = 10, 1 step at α = 0.01, meta-batch 25, 70,000
iterations, evaluated after up to 10 steps.

Meta-SGD and ANIL run from any preset with ``--algorithm metasgd`` or ``--algorithm anil``. The
``metalstm-omniglot-*`` presets carry the Meta-LSTM settings of Ravi & Larochelle's official code
(their miniImageNet configs, applied to Omniglot): a learner of 4 x [3x3 conv, 32 filters, batch
norm, ReLU, 2x2 max-pool], 12 learner updates for 1-shot and 8 for 5-shot on the whole support
set, 15 query examples per class, one episode per meta-update, Adam at 1e-3 with the
meta-gradient's norm clipped to 0.25, 75,000 (1-shot) or 50,000 (5-shot) episodes. The learner's
batch norm uses batch statistics in meta-training and the support set's at evaluation
(``transductive=False``; see :mod:`metalearn_edu.meta_lstm.algorithm`).

Optional keys of any MAML-family configuration, for speed (absent: the defaults): ``precision``
("float32", "tf32" on CUDA, "bf16"; :mod:`metalearn_edu.precision`), ``channels_last`` (NHWC
convolution activations, Conv4 only), ``compile_mode`` (``torch.compile``'s mode for
``execution="compiled"``, e.g. "reduce-overhead" for CUDA graphs). Meta-LSTM runs in float32.
``conv`` ("conv2d" or "matmul", Omniglot only) is how Conv4 computes its convolutions (the same
function; see :mod:`metalearn_edu.models.conv4`).
"""

from __future__ import annotations

from typing import Any

from metalearn_edu.algorithms import ALGORITHMS, MAML
from metalearn_edu.meta_lstm import MetaLSTM
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
    **{
        f"metalstm-omniglot-5w{shots}s": {
            **COMMON,
            "algorithm": "metalstm",
            "task": "omniglot",
            "ways": 5,
            "shots": shots,
            "queries": 15,
            "downsample": "maxpool",
            "hidden": 32,
            "transductive": False,
            "inner_steps": 12 if shots == 1 else 8,
            "test_inner_steps": 12 if shots == 1 else 8,
            "metalstm_hidden": 20,
            "clip_norm": 0.25,
            "meta_batch_size": 1,
            "iterations": 75_000 if shots == 1 else 50_000,
        }
        for shots in (1, 5)
    },
}

ALGORITHM_NAMES = (*ALGORITHMS, "metalstm")

# optional configuration keys that choose how fast a MAML-family run computes, and their defaults
SPEED_DEFAULTS: dict[str, Any] = {
    "precision": "float32",
    "channels_last": False,
    "compile_mode": None,
    "vmap_chunk_size": None,  # tasks per vmap chunk when memory is short (None: all at once)
}


def build_algorithm(config: dict[str, Any]) -> MAML | MetaLSTM:
    """The algorithm (with its model) a configuration describes."""
    if config["task"] == "sinusoid":
        if config.get("conv", "conv2d") != "conv2d":
            raise ValueError(
                f"conv={config['conv']!r} chooses how Conv4 computes its convolutions; the "
                "sinusoid MLP has none: leave it out."
            )
        model = sinusoid_mlp()
    elif config["task"] == "omniglot":
        model = Conv4(
            ways=config["ways"],
            downsample=config["downsample"],
            transductive=config["transductive"],
            hidden=config.get("hidden", 64),
            conv=config.get("conv", "conv2d"),
        )
    else:
        raise ValueError(f"unknown task {config['task']!r}: expected 'sinusoid' or 'omniglot'.")
    if config["algorithm"] == "metalstm":
        changed = {
            key: config[key]
            for key, default in SPEED_DEFAULTS.items()
            if config.get(key, default) != default
        }
        if changed:
            raise ValueError(
                f"Meta-LSTM runs in float32 with its own learner updates; {changed} applies to "
                "the MAML family (maml, fomaml, reptile, metasgd, anil): leave it out."
            )
        return MetaLSTM(
            model,
            inner_steps=config["inner_steps"],
            hidden=config.get("metalstm_hidden", 20),
            clip_norm=config.get("clip_norm", 0.25),
        )
    if config["algorithm"] not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {config['algorithm']!r}: one of {sorted(ALGORITHM_NAMES)}."
        )
    kwargs = {
        "inner_lr": config["inner_lr"],
        "inner_steps": config["inner_steps"],
        "execution": config["execution"],
    }
    if config["algorithm"] in ("maml", "metasgd", "anil"):
        kwargs["first_order"] = config["first_order"]
    if config.get("checkpoint_inner", False):
        kwargs["checkpoint_inner"] = True
    for key, default in SPEED_DEFAULTS.items():
        kwargs[key] = config.get(key, default)
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
