"""Reading a trained Meta-LSTM (Ravi & Larochelle 2017): its gates as a learning-rate schedule, and
plain SGD as the special case of its cell update.

In eq. 2 of the paper, θ_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t, the input gate i_t is a learning rate and
the forget gate f_t a decay of the parameters, both chosen per coordinate and per step by the
meta-learner. :func:`gate_schedule` averages them over each learner tensor (a layer's weight, its
bias ...) and over many tasks: the learned schedule. :func:`pin_gates` sets the meta-learner's
weights so that f_t = 1 and i_t = α at every step, which turns the cell update into SGD with
learning rate α.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.meta_lstm.algorithm import MetaLSTM, gates_by_parameter
from metalearn_edu.tasks.episode import TaskDistribution

#: σ(40) rounds to exactly 1.0 in float32 and float64: a forget gate with this bias keeps θ.
FORGET_BIAS_ONE = 40.0


def pin_gates(meta_params: Params, alpha: float) -> Params:
    """A copy of ``meta_params`` whose meta-learner is SGD with learning rate ``alpha``.

    The gates read layer 1's output, θ_{t−1} and their previous value only through W_F and W_I;
    with those at zero, f_t = σ(b_F) and i_t = σ(b_I) at every step. b_F = 40 gives f_t = 1
    exactly, b_I = log(α / (1 − α)) gives i_t = α, so θ_t = θ_{t−1} − α ∇_t. The learner's
    initialisation c_0 and layer 1 are kept (layer 1 then no longer matters).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"an input gate is a sigmoid: alpha must lie in (0, 1), got {alpha!r}.")
    pinned = {name: p.detach().clone() for name, p in meta_params.items()}
    for name in ("cell.W_F", "cell.W_I"):
        pinned[name] = torch.zeros_like(pinned[name])
    pinned["cell.b_F"] = torch.full_like(pinned["cell.b_F"], FORGET_BIAS_ONE)
    pinned["cell.b_I"] = torch.full_like(pinned["cell.b_I"], math.log(alpha / (1 - alpha)))
    return pinned


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
