"""Is the Omniglot sampler ever the bottleneck? Time it against one MAML training step.

    python -m metalearn_edu.bench_sampler [--root FOLDER] [--steps 3] [--episodes 50] [--out FILE]

Measures, on this machine:

- the cache: conversion of the two archives into the 28x28 cache (in a temporary folder, so the
  real cache is untouched; skipped without archives) and the time to load it;
- the sampler: episodes per second for 5-way 1-shot 15 queries (meta-batch 32) and 20-way 5-shot
  15 queries (meta-batch 16), the MAML paper's Omniglot settings (App. A.1);
- the sampler's two parts on one CPU thread: drawing the indices (``OmniglotTasks.draw``, always
  on the CPU) and the gather plus conversion to float (``OmniglotTasks.gather``, which runs on
  the device when the sampler has one). With ``device="cuda"`` the drawing is the CPU work left
  per meta-batch; where CUDA is present, the time of a sample made on the GPU is measured too;
- one second-order MAML meta-gradient step of the conv4 network on such an episode, with the
  paper's inner loop (5-way: 1 step, alpha 0.4; 20-way: 5 steps, alpha 0.1), using
  ``metalearn_edu.algorithms.MAML`` (or, if that cannot be imported, a torch.func step written
  here).

The sampler is not a bottleneck when its time per episode is a small fraction of the step's.
On a GPU the step is short (a few ms), so what counts there is the CPU work left per meta-batch.
Results go to a JSON file (default ``data/benchmarks/omniglot_sampler.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from metalearn_edu.config import data_dir
from metalearn_edu.data.omniglot import cache_path, load_omniglot, locate_archives
from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.omniglot import OmniglotTasks

SETTINGS = [
    # name, ways, shots, queries, meta_batch_size, inner_steps, inner_lr
    ("5-way 1-shot", 5, 1, 15, 32, 1, 0.4),
    ("20-way 5-shot", 20, 5, 15, 16, 5, 0.1),
]


def _timeit(
    fn: Callable[[], object], repeats: int, synchronize: Callable[[], object] = lambda: None
) -> float:
    """Mean seconds per call over ``repeats`` calls, after one warm-up call; ``synchronize``
    (e.g. ``torch.cuda.synchronize``) waits for a device's queued work before and after."""
    fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


def _step_with_library(ways: int, inner_steps: int, inner_lr: float) -> Callable[[Episode], None]:
    from metalearn_edu.algorithms import MAML
    from metalearn_edu.models.conv4 import Conv4

    maml = MAML(Conv4(ways=ways), inner_lr=inner_lr, inner_steps=inner_steps)
    params = maml.init_meta_params(torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-3)

    def step(episode: Episode) -> None:
        grads, _ = maml.meta_gradient(params, episode)
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()

    return step


def _step_with_torch_func(
    ways: int, inner_steps: int, inner_lr: float
) -> Callable[[Episode], None]:
    """A plain second-order MAML step of a stride-2 conv4 (64 filters, batch norm), torch.func."""
    import torch.nn.functional as F
    from torch.func import functional_call, grad

    layers = []
    for i in range(4):
        layers += [torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, stride=2, padding=1)]
        layers += [torch.nn.BatchNorm2d(64, track_running_stats=False), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.LazyLinear(ways))
    net(torch.zeros(1, 1, 28, 28))
    params = {k: v.detach().requires_grad_() for k, v in net.named_parameters()}
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-3)

    def loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x,)), y)

    def task_loss(p, sx, sy, qx, qy):
        for _ in range(inner_steps):  # MAML eq. 1, keeping the graph (second order)
            g = grad(loss)(p, sx, sy)
            p = {k: p[k] - inner_lr * g[k] for k in p}
        return loss(p, qx, qy)

    def step(episode: Episode) -> None:
        optimizer.zero_grad()
        total = sum(
            task_loss(
                params,
                *(
                    t[i]
                    for t in (
                        episode.support_x,
                        episode.support_y,
                        episode.query_x,
                        episode.query_y,
                    )
                ),
            )
            for i in range(episode.num_tasks)
        )
        (total / episode.num_tasks).backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes timed per setting")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per setting")
    parser.add_argument("--root", default=None, help="folder with the two Omniglot zips")
    parser.add_argument("--no-build", action="store_true", help="skip timing the cache conversion")
    parser.add_argument(
        "--out", type=Path, default=data_dir() / "benchmarks" / "omniglot_sampler.json"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result: dict = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "processor": platform.machine(),
        },
    }

    if not args.no_build:
        try:
            archives = locate_archives(args.root, download_missing=False)
        except (FileNotFoundError, ValueError) as e:
            result["cache_build_s"] = None
            print(f"cache build not timed: {e}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                load_omniglot(args.root, cache_dir=tmp, rebuild=True, progress=False)
                result["cache_build_s"] = round(time.perf_counter() - start, 2)
                del archives
    data = load_omniglot(args.root, progress=False)
    start = time.perf_counter()
    data = load_omniglot(progress=False)
    result["cache_load_s"] = round(time.perf_counter() - start, 3)
    result["cache_bytes"] = cache_path().stat().st_size

    try:
        _step_with_library(5, 1, 0.4)
        step_impl, make_step = "metalearn_edu.algorithms.MAML + models.Conv4", _step_with_library
    except Exception as e:  # the algorithms package may not exist yet / have another API
        print(f"metalearn_edu.algorithms not usable ({e!r}); timing a torch.func step instead")
        step_impl, make_step = "torch.func conv4 in bench_sampler.py", _step_with_torch_func
    result["training_step"] = f"{step_impl}, second order, CPU"

    result["settings"] = []
    for name, ways, shots, queries, batch, inner_steps, inner_lr in SETTINGS:
        sampler = OmniglotTasks("train", ways, shots, queries, data=data)
        g = torch.Generator().manual_seed(0)
        sample_s = _timeit(lambda s=sampler, b=batch, g=g: s.sample(b, g), args.episodes)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small ops suffer most from busy or oversubscribed cores
        sample_1thread_s = _timeit(lambda s=sampler, b=batch, g=g: s.sample(b, g), args.episodes)
        draw_s = _timeit(lambda s=sampler, b=batch, g=g: s.draw(b, g), args.episodes)
        rows = sampler.draw(batch, g)
        gather_s = _timeit(lambda s=sampler, r=rows: s.gather(r), args.episodes)
        torch.set_num_threads(threads)
        episode = sampler.sample(batch, g)
        step = make_step(ways, inner_steps, inner_lr)
        step_s = _timeit(lambda st=step, e=episode: st(e), args.steps)
        row = {
            "setting": name,
            "ways": ways,
            "shots": shots,
            "queries": queries,
            "meta_batch_size": batch,
            "inner_steps": inner_steps,
            "inner_lr": inner_lr,
            "sample_ms": round(1e3 * sample_s, 2),
            "episodes_per_s": round(1 / sample_s, 1),
            "sample_ms_1_thread": round(1e3 * sample_1thread_s, 2),
            "draw_indices_ms_1_thread": round(1e3 * draw_s, 3),
            "gather_convert_ms_1_thread": round(1e3 * gather_s, 2),
            "training_step_ms": round(1e3 * step_s, 1),
            "sampler_share_of_step": round(sample_s / step_s, 4),
        }
        if torch.cuda.is_available():
            on_gpu = OmniglotTasks("train", ways, shots, queries, data=data, device="cuda")
            sample_cuda_s = _timeit(
                lambda s=on_gpu, b=batch, g=g: s.sample(b, g),
                args.episodes,
                torch.cuda.synchronize,
            )
            row["sample_ms_cuda"] = round(1e3 * sample_cuda_s, 3)
            del on_gpu
        result["settings"].append(row)
        gpu = f"; on the GPU {row['sample_ms_cuda']} ms" if "sample_ms_cuda" in row else ""
        print(
            f"{name}, meta-batch {batch}: sampler {row['sample_ms']} ms/episode "
            f"({row['episodes_per_s']} episodes/s; {row['sample_ms_1_thread']} ms on 1 thread: "
            f"{row['draw_indices_ms_1_thread']} ms drawing the indices, "
            f"{row['gather_convert_ms_1_thread']} ms gathering{gpu}); "
            f"training step {row['training_step_ms']} ms; "
            f"sampler = {100 * row['sampler_share_of_step']:.2f}% of a step"
        )
    if hasattr(os, "getloadavg"):
        result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(f"cache: build {result.get('cache_build_s')} s, load {result['cache_load_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
