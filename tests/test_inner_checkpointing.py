"""Gradient checkpointing of the inner loop: the same meta-gradient, with only the steps' inputs
held between the forward and the backward pass; and the compiled execution."""

from __future__ import annotations

import pytest
import torch
from _maml_helpers import (
    classification_episode,
    finite_difference_grad,
    float64,
    max_abs_diff,
    meta_loss,
    one_thread,
    regression_episode,
)

from metalearn_edu import bench
from metalearn_edu.algorithms import ANIL, FOMAML, MAML, MetaSGD
from metalearn_edu.algorithms.maml import maml_compiled
from metalearn_edu.diagnostics import graph_memory
from metalearn_edu.inner_loop import adapt
from metalearn_edu.models import MLP, Conv4
from metalearn_edu.presets import PRESETS, build_algorithm
from metalearn_edu.train_cli import add_arguments, config_from_args


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_checkpointed_meta_gradient_equals_finite_differences():
    model = MLP((1, 6, 1))
    algorithm = MAML(model, inner_lr=0.05, inner_steps=3, execution="loop", checkpoint_inner=True)
    params = float64(algorithm.init_meta_params(torch.Generator().manual_seed(0)))
    episode = regression_episode()
    grads, _ = algorithm.meta_gradient(params, episode)
    # h = 1e-6: with torch 2.11's initialisation from the same seed a ReLU input lies within 1e-5
    # of its kink, where central differences at h = 1e-5 err by 1e-5 (at 1e-6 they agree to 9e-11)
    expected = finite_difference_grad(meta_loss(algorithm, episode), params, h=1e-6)
    assert max_abs_diff(grads, expected) < 1e-7


@pytest.mark.parametrize("algorithm_class", [MAML, MetaSGD, ANIL])
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_checkpointed_meta_gradient_equals_the_stored_graphs_one(algorithm_class, inner_steps):
    episode = classification_episode()
    grads = {}
    for checkpoint_inner in (False, True):
        algorithm = algorithm_class(
            Conv4(ways=3, image_size=8, hidden=4),
            inner_lr=0.3,
            inner_steps=inner_steps,
            execution="loop",
            checkpoint_inner=checkpoint_inner,
        )
        params = float64(algorithm.init_meta_params(torch.Generator().manual_seed(1)))
        grads[checkpoint_inner], _ = algorithm.meta_gradient(params, episode)
    # Meta-SGD's learning rates get their meta-gradient (−v ∘ ∇L) through the checkpoint too
    assert grads[True].keys() == grads[False].keys()
    assert max_abs_diff(grads[True], grads[False]) < 1e-12


def _graph_bytes(inner_steps: int, checkpoint: bool) -> tuple[int, int]:
    """Bytes the autograd graph holds after the inner loop and the query loss, and θ's size."""
    model = MLP((1, 64, 64, 1))
    params = {
        n: p.requires_grad_() for n, p in model.init(torch.Generator().manual_seed(0)).items()
    }
    episode = regression_episode(tasks=1, support=200, query=10, seed=2).to("cpu", torch.float32)
    x, y = episode.support_x[0], episode.support_y[0]

    def meta_objective() -> torch.Tensor:
        adapted = adapt(
            lambda p: ((model.forward(p, x) - y) ** 2).mean(),
            params,
            inner_lr=0.01,
            inner_steps=inner_steps,
            checkpoint=checkpoint,
        )
        return ((model.forward(adapted, episode.query_x[0]) - episode.query_y[0]) ** 2).mean()

    loss, peak = graph_memory(meta_objective)
    loss.backward()  # the graph is complete and usable
    return peak, sum(p.numel() * p.element_size() for p in params.values())


def test_checkpointing_holds_parameters_not_step_graphs():
    grown = {ck: _graph_bytes(8, ck)[0] - _graph_bytes(1, ck)[0] for ck in (False, True)}
    theta_bytes = _graph_bytes(1, True)[1]
    # Stored graphs: each extra step keeps its activations (200 support points x 64 units x ...).
    assert grown[False] > 7 * 50 * theta_bytes / 10
    # Checkpointed: each extra step keeps its input θ'_k (and at most θ' itself), nothing more.
    assert grown[True] <= 7 * 2 * theta_bytes
    assert grown[False] > 5 * grown[True]


def test_checkpointing_refuses_torch_func_and_auto_picks_the_loop():
    with pytest.raises(ValueError, match="gradient='autograd'"):
        adapt(lambda p: p["w"].sum(), {"w": torch.ones(2)}, inner_lr=0.1, inner_steps=1,
              gradient="func", checkpoint=True)  # fmt: skip
    for execution in ("functional", "vmap", "compiled"):
        with pytest.raises(ValueError, match="loop"):
            MAML(MLP((1, 4, 1)), execution=execution, checkpoint_inner=True)
    algorithm = MAML(MLP((1, 4, 1)), inner_steps=2, checkpoint_inner=True)  # auto
    params = float64(algorithm.init_meta_params(torch.Generator().manual_seed(0)))
    grads, _ = algorithm.meta_gradient(params, regression_episode())
    reference, _ = MAML(MLP((1, 4, 1)), inner_steps=2, execution="loop").meta_gradient(
        params, regression_episode()
    )
    assert max_abs_diff(grads, reference) < 1e-12


def test_checkpointed_step_is_not_differentiated_twice():
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    adapted = adapt(lambda p: (p["w"] ** 3).sum(), {"w": w}, inner_lr=0.1, inner_steps=1,
                    checkpoint=True)  # fmt: skip
    (g,) = torch.autograd.grad(adapted["w"].sum(), w, create_graph=True)
    assert torch.allclose(g, 1 - 0.1 * 6 * w.detach())  # d/dw (w − 0.3 w²) = 1 − 0.6 w
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(g.sum(), w)


def test_command_line_and_benchmark_know_checkpointing():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--preset", "sinusoid", "--checkpoint-inner"]))
    assert config["checkpoint_inner"] is True
    assert build_algorithm(config).checkpoint_inner is True
    assert build_algorithm(PRESETS["sinusoid"]).checkpoint_inner is False
    spec = {"workload": "omniglot-5w1s", "meta_batch": 1, "inner_steps": 2, "first_order": False}
    diffs = bench.check_gradients(spec, "cpu", ("loop", "loop+checkpoint"))
    assert diffs["loop+checkpoint"] <= bench.GRADIENT_RTOL


def test_compiled_execution_gives_the_loop_meta_gradient():
    """torch.compile of the vmap execution (compiles once: about 10-20 s on a 2-core CPU)."""
    model = MLP((1, 8, 1))
    episode = regression_episode(tasks=4)
    params = float64(MAML(model).init_meta_params(torch.Generator().manual_seed(3)))
    compiled = MAML(model, inner_lr=0.05, inner_steps=2, execution="compiled")
    loop = MAML(model, inner_lr=0.05, inner_steps=2, execution="loop")
    grads, metrics = compiled.meta_gradient(params, episode)
    expected, expected_metrics = loop.meta_gradient(params, episode)
    assert max_abs_diff(grads, expected) < 1e-10
    assert metrics["post_loss"] == pytest.approx(expected_metrics["post_loss"], rel=1e-10)
    again, _ = compiled.meta_gradient(params, episode)  # the compiled function is reused
    assert max_abs_diff(again, grads) == 0


@pytest.mark.parametrize("algorithm_class", [MAML, FOMAML, MetaSGD, ANIL])
def test_compiled_execution_is_one_graph_without_breaks(algorithm_class):
    """Dynamo captures the whole vmapped per-task gradient, inner update included, as one graph.

    With torch 2.11 a single untraceable call in the inner update's kernel dispatch made Dynamo
    skip the whole function, so "compiled" silently ran eagerly (20 it/s on an H200, against 17.6
    for plain vmap). The execution now compiles with ``fullgraph=True``: a graph break raises.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    algorithm = algorithm_class(MLP((1, 8, 1)), inner_lr=0.05, execution="compiled")
    params = algorithm.init_meta_params(torch.Generator().manual_seed(6))
    algorithm.meta_gradient(params, regression_episode(tasks=3).to("cpu", torch.float32))
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


def test_outputs_of_cuda_graph_modes_are_copied_out_of_the_graph():
    """With CUDA graphs, the compiled function's outputs live in the graph's memory and its next
    replay overwrites them; the training loop keeps metrics for up to ``sync_every`` iterations."""
    outputs = ({"w": torch.ones(2)}, {"pre_loss": torch.tensor(1.0)})
    episode = regression_episode(tasks=2).to("cpu", torch.float32)
    for mode, copied in ((None, False), ("reduce-overhead", True), ("max-autotune", True)):
        algorithm = MAML(MLP((1, 2, 1)), execution="compiled", compile_mode=mode)
        algorithm._compiled = lambda *args: outputs
        grads, metrics = maml_compiled(algorithm, {"w": torch.zeros(2)}, episode)
        assert (grads["w"] is not outputs[0]["w"]) == copied
        assert (metrics["pre_loss"] is not outputs[1]["pre_loss"]) == copied
        assert torch.equal(grads["w"], outputs[0]["w"]) and metrics["pre_loss"] == 1


def test_vmap_in_chunks_gives_the_same_meta_gradient():
    model = MLP((1, 8, 1))
    episode = regression_episode(tasks=5)
    params = float64(MAML(model).init_meta_params(torch.Generator().manual_seed(4)))
    whole, _ = MAML(model, inner_steps=2, execution="vmap").meta_gradient(params, episode)
    chunked, _ = MAML(model, inner_steps=2, execution="vmap", vmap_chunk_size=2).meta_gradient(
        params, episode
    )
    assert max_abs_diff(whole, chunked) < 1e-12
    with pytest.raises(ValueError, match="vmap_chunk_size"):
        MAML(model, vmap_chunk_size=0)


def test_compiled_execution_does_not_recompile_during_training():
    """After the first call, new batches of the same shape and new parameter values reuse the
    compiled graph (a recompile per meta-iteration would cost the compile time every step)."""
    import torch._dynamo

    model = MLP((1, 8, 1))
    algorithm = MAML(model, inner_lr=0.05, execution="compiled")
    params = algorithm.init_meta_params(torch.Generator().manual_seed(5))
    algorithm.meta_gradient(params, regression_episode(tasks=4, seed=0).to("cpu", torch.float32))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (1, 2, 3):
            params = {n: p + 0.01 * seed for n, p in params.items()}
            episode = regression_episode(tasks=4, seed=seed).to("cpu", torch.float32)
            grads, _ = algorithm.meta_gradient(params, episode)
            assert all(torch.isfinite(g).all() for g in grads.values())
