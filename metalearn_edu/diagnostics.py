"""What a meta-gradient costs and how far an approximation of it is off.

- :func:`gradient_angle`: the angle between two gradients (e.g. MAML's second-order meta-gradient
  and its first-order approximation, Finn et al. 2017 §5.2, which drops the Hessian term
  ∇²L^support in dθ'/dθ = I − α ∇²L^support);
- :func:`graph_memory`: the peak memory the autograd graph holds while a function runs (the
  tensors saved for the backward pass, counted live through
  ``torch.autograd.graph.saved_tensors_hooks``): with ``create_graph=True`` every inner step's
  graph is kept until the meta-gradient is taken, so it grows with the number of steps, while a
  first-order inner loop frees each step's graph as soon as its gradient is computed;
- :func:`saved_bytes`: the simpler count :func:`graph_memory` refines, the bytes of every tensor
  saved for backward while a function runs, with nothing ever subtracted;
- :func:`time_per_call`: the median wall time of a function over a few repeats;
- :func:`count_operations`: how many tensor operations (each a kernel launch on a GPU) a function
  runs, forward and backward;
- :func:`count_flops`: the floating-point operations of its convolutions and matrix products.
"""

from __future__ import annotations

import math
import statistics
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


def gradient_angle(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """The angle in degrees between two gradients given as parameter dicts (same keys).

    Both are flattened and concatenated; the angle is arccos(<a, b> / (|a| |b|)).
    """
    if set(a) != set(b):
        raise ValueError(f"the gradients have different parameters: {sorted(a)} vs {sorted(b)}.")
    va = torch.cat([a[n].detach().reshape(-1).double() for n in a])
    vb = torch.cat([b[n].detach().reshape(-1).double() for n in a])
    na, nb = va.norm().item(), vb.norm().item()
    if na == 0 or nb == 0:
        raise ValueError("the angle to a zero gradient is undefined.")
    cosine = max(-1.0, min(1.0, (va @ vb).item() / (na * nb)))
    return math.degrees(math.acos(cosine))


class _Saved:
    __slots__ = ("__weakref__", "key", "tensor")

    def __init__(self, tensor: Tensor, key: int) -> None:
        self.tensor, self.key = tensor, key


def graph_memory(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, peak bytes held by the autograd graph)``.

    Every tensor an operation saves for the backward pass is counted from when it is saved until
    the graph releases it (after a backward pass, or when the graph is dropped); a storage saved
    several times is counted once. Gradients computed inside ``torch.func`` transforms are not
    seen by these hooks: measure the autograd (loop) execution.
    """
    live: dict[int, list[int]] = {}  # storage pointer -> [bytes, references]
    totals = {"current": 0, "peak": 0}

    def release(key: int) -> None:
        entry = live[key]
        entry[1] -= 1
        if entry[1] == 0:
            totals["current"] -= entry[0]
            del live[key]

    def pack(tensor: Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in live:
            live[key][1] += 1
        else:
            live[key] = [storage.nbytes(), 1]
            totals["current"] += storage.nbytes()
            totals["peak"] = max(totals["peak"], totals["current"])
        saved = _Saved(tensor, key)
        weakref.finalize(saved, release, key)
        return saved

    def unpack(saved: _Saved) -> Tensor:
        return saved.tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        result = fn()
    return result, totals["peak"]


def saved_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, total bytes of all tensors saved for backward)``.

    Each save counts ``tensor.numel() * tensor.element_size()``, however often a tensor is saved
    and whether or not its graph is freed in the meantime: an upper bound on what the graph
    holds, equal to it when one graph is built and kept (as a second-order inner loop does).
    """
    total = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, total


def time_per_call(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds per call of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _OperationCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.written = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, Tensor) and not t._is_view():
                self.written += t.numel() * t.element_size()
        return out


def count_operations(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``fn()``; return ``(its result, ATen operations dispatched, bytes they wrote)``.

    Every operation the dispatcher sees is counted, those of backward passes included (views and
    metadata operations too): on a GPU each of the others is a kernel launch, whose host-side
    cost of a few microseconds bounds an eager meta-iteration from below. The bytes are those of
    the outputs that are not views: a lower bound on an eager run's memory traffic (each output
    is written once, and in-place results are counted too).
    """
    with _OperationCounter() as counter:
        result = fn()
    return result, counter.count, counter.written


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, floating-point operations)``, counted by
    ``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add of convolutions and matrix
    products, forward and backward; element-wise operations are not counted."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, counter.get_total_flops()
