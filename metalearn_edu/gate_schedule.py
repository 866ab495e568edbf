"""The Meta-LSTM's learned schedule (Ravi & Larochelle 2017), read over many tasks.

In eq. 2 of the paper, θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t, the input gate i_t is a learning rate and
the forget gate f_t a decay of the parameters, both chosen per coordinate and per step by the
meta-learner. :func:`gate_schedule` averages them over each learner tensor (a layer's weight, its
bias ...) and over the tasks an evaluation draws: the learned schedule. It sits above the
algorithm layer because it reads tasks the way :mod:`metalearn_edu.evaluation` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.meta_lstm.algorithm import MetaLSTM, gates_by_parameter
from metalearn_edu.tasks.episode import TaskDistribution


def gate_schedule(
    algorithm: MetaLSTM,
    meta_params: Params,
    tasks: TaskDistribution,
    num_tasks: int,
    *,
    seed: int = 0,
    batch_size: int = 25,
) -> tuple[dict[str, dict[str, Tensor]], Tensor]:
    """The learned schedule on ``num_tasks`` tasks (the tasks ``evaluate`` draws with ``seed``).

    Returns ``({name: {"forget": [T], "input": [T]}}, support_losses [num_tasks, T])``: for each
    learner tensor, its mean forget and input gate at each step t = 1 .. T, averaged over its
    coordinates and over the tasks (:func:`~metalearn_edu.meta_lstm.gates_by_parameter` per
    task), and each task's support loss L_t at θ_{t−1}, the loss the meta-learner reads at step t.
    """
    params = {name: p.detach() for name, p in meta_params.items()}
    learner, _ = algorithm.split(params)
    dtype = next(iter(params.values())).dtype
    totals: dict[str, dict[str, Tensor]] = {}
    losses = []
    for sx, sy, _, _ in meta_test_tasks(
        algorithm.model, tasks, num_tasks, batch_size=batch_size, seed=seed, dtype=dtype
    ):
        with torch.no_grad():
            _, trace = algorithm.adapt_with_trace(params, sx, sy)
        for name, by_gate in gates_by_parameter(trace, learner).items():
            slot = totals.setdefault(name, {g: torch.zeros_like(v) for g, v in by_gate.items()})
            for gate, values in by_gate.items():
                slot[gate] += values / num_tasks
        losses.append(torch.stack(trace.losses))
    return totals, torch.stack(losses)
