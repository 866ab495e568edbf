"""Where the time of a meta-iteration goes: floors from arithmetic, memory traffic and launches.

A meta-iteration cannot take less than the largest of three floors (the roofline model,
Williams, Waterman & Patterson 2009, with a launch term for a latency-bound workload):

    t ≥ max( F / P,   B / W,   N · τ )

- F floating-point operations at the card's peak rate P (:func:`metalearn_edu.diagnostics.
  count_flops` counts the convolutions and matrix products of a real meta-iteration);
- B bytes of compulsory memory traffic at the bandwidth W;
- N operations launched one after another (:func:`metalearn_edu.diagnostics.count_operations`),
  each costing at least τ of host and launch latency in eager PyTorch (a few microseconds).

Second-order MAML on Omniglot runs tens of thousands of tiny operations per meta-iteration when
the tasks are processed in a loop, so it is launch-bound by two orders of magnitude: this is
what ``vmap`` (N independent of the number of tasks), ``torch.compile`` (fewer, fused kernels)
and CUDA graphs (τ paid once per graph) attack.

The card figures are NVIDIA's data-sheet peaks (dense: the sparsity figures halved);
:data:`GPU_ANCHORS` are the throughputs issue 7 reports for other libraries on one H200.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalearn_edu.config import project_root


@dataclass(frozen=True)
class Card:
    """Peak rates of an accelerator: FLOP/s per number format and memory bandwidth (bytes/s)."""

    name: str
    fp32: float
    tf32: float
    bf16: float
    bandwidth: float


H200 = Card("NVIDIA H200 SXM", fp32=67e12, tf32=494.5e12, bf16=989.5e12, bandwidth=4.8e12)
H100 = Card("NVIDIA H100 SXM", fp32=67e12, tf32=494.5e12, bf16=989.5e12, bandwidth=3.35e12)


def iteration_floor(
    flops: float,
    bytes_moved: float,
    operations: int,
    peak_flops: float,
    bandwidth: float,
    launch_s: float,
) -> float:
    """The floor max(F / P, B / W, N · τ) in seconds (see the module docstring)."""
    if peak_flops <= 0 or bandwidth <= 0 or launch_s < 0:
        raise ValueError(
            f"peak_flops and bandwidth must be positive and launch_s not negative, got "
            f"{peak_flops}, {bandwidth} and {launch_s}."
        )
    if flops < 0 or bytes_moved < 0 or operations < 0:
        raise ValueError(
            f"flops, bytes_moved and operations cannot be negative: {flops}, {bytes_moved}, "
            f"{operations}."
        )
    return max(flops / peak_flops, bytes_moved / bandwidth, operations * launch_s)


def floors(
    flops: float, bytes_moved: float, operations: int, card: Card, launch_s: float
) -> dict[str, float]:
    """Each term of :func:`iteration_floor` in seconds, compute at FP32 and at TF32."""
    return {
        "compute (FP32)": flops / card.fp32,
        "compute (TF32)": flops / card.tf32,
        "memory traffic": bytes_moved / card.bandwidth,
        "launches": operations * launch_s,
    }


def benchmarks_dir() -> Path:
    """The repository's ``data/benchmarks`` folder, where measured figures are committed."""
    root = project_root()
    if root is None:
        raise FileNotFoundError(
            "the committed benchmark figures live in the repository's data/benchmarks/; run from "
            "a source checkout of metalearn_edu (pip install -e .), not from an installed wheel."
        )
    return root / "data" / "benchmarks"


def load_anchors(path: Path | None = None) -> dict[str, Any]:
    """The committed GPU anchor figures (card, versions, source and throughputs) as a ``dict``."""
    return json.loads(Path(path or benchmarks_dir() / "anchors_h200.json").read_text())
