"""Gradient angles, autograd-graph memory and timing."""

import math

import pytest
import torch

from metalearn_edu.algorithms import FOMAML, MAML
from metalearn_edu.diagnostics import gradient_angle, graph_memory, saved_bytes, time_per_call
from metalearn_edu.models import MLP
from metalearn_edu.tasks import SinusoidTasks


def test_gradient_angle_of_known_vectors():
    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    assert math.isclose(gradient_angle(a, a), 0.0, abs_tol=1e-6)
    b = {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])}
    assert math.isclose(gradient_angle(a, b), 90.0)
    c = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0])}
    assert math.isclose(gradient_angle(a, c), 45.0)
    neg = {n: -v for n, v in a.items()}
    assert math.isclose(gradient_angle(a, neg), 180.0)
    with pytest.raises(ValueError, match="different parameters"):
        gradient_angle(a, {"w": a["w"]})
    with pytest.raises(ValueError, match="zero"):
        gradient_angle(a, {n: torch.zeros_like(v) for n, v in a.items()})


def test_graph_memory_counts_saved_tensors_and_their_release():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)

    def square_then_sum():
        return (x * x).sum()  # mul saves x (once: same storage) -> 8000 bytes

    result, peak = graph_memory(square_then_sum)
    assert peak == 8000 and result.requires_grad

    def two_graphs_in_turn():
        for _ in range(3):
            y = torch.exp(x)  # exp saves its result: a new 8000-byte tensor each time
            torch.autograd.grad(y.sum(), x)  # frees the graph: memory goes back down
        return None

    assert graph_memory(two_graphs_in_turn)[1] == 8000

    def keep_all():
        return [torch.exp(x) for _ in range(3)]  # three graphs alive at once

    kept, peak = graph_memory(keep_all)
    assert peak == 3 * 8000 and len(kept) == 3


def test_second_order_graph_grows_with_inner_steps_first_order_stays_flat():
    model = MLP((1, 16, 16, 1), init_scheme="xavier")
    ep = SinusoidTasks(5, 5).sample(2, torch.Generator().manual_seed(0))
    params = model.init(torch.Generator().manual_seed(0))
    memory = {}
    for cls in (MAML, FOMAML):
        for steps in (1, 2, 4):
            algo = cls(model, inner_lr=0.01, inner_steps=steps, execution="loop")
            memory[cls.__name__, steps] = graph_memory(lambda a=algo: a.meta_gradient(params, ep))[
                1
            ]
    assert memory["MAML", 1] < memory["MAML", 2] < memory["MAML", 4]
    assert memory["FOMAML", 1] == memory["FOMAML", 2] == memory["FOMAML", 4]
    assert memory["FOMAML", 4] < memory["MAML", 1]


def test_time_per_call_runs_warmup_and_repeats():
    calls = []
    seconds = time_per_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0
    with pytest.raises(ValueError):
        time_per_call(lambda: None, repeats=0)


def test_saved_bytes_counts_every_save_and_never_subtracts():
    x = torch.randn(100, dtype=torch.float32, requires_grad=True)

    def three_graphs_in_turn():
        for _ in range(3):
            torch.autograd.grad(torch.exp(x).sum(), x)

    assert saved_bytes(three_graphs_in_turn)[1] == 3 * 400
    assert graph_memory(three_graphs_in_turn)[1] == 400
    assert saved_bytes(lambda: (x * x).sum())[1] == 2 * 400  # mul saves both operands
    assert saved_bytes(lambda: x.detach() * 2)[1] == 0
