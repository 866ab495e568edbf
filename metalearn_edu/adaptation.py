"""What a meta-trained initialisation does with a new task: adapt on its support set, then predict.

MAML (Finn et al. 2017, eq. 1) meta-learns θ so that a few gradient steps on a new task's support
set,

    θ'_{k+1} = θ'_k − α ∇_θ L_support(f_θ'_k),      θ'_0 = θ,

give a model f_θ'_K that classifies the task's other examples. At test time nothing is
meta-learned any more: the steps are plain SGD, so their gradients are taken first order.

- :func:`adapt_then_predict` runs those K steps and returns the class probabilities
  ``softmax(f_θ'_K(x))`` for new inputs ``x`` (MAML §5.2, the test-time procedure).
- :func:`accuracy_by_steps` follows one adaptation path per task and records the query accuracy
  after 0, 1, ..., ``max_steps`` steps, on exactly the tasks that
  :func:`metalearn_edu.evaluation.evaluate` draws with the same ``seed`` and ``batch_size``:
  column k equals ``evaluate(inner_steps=k)``'s per-task accuracies, for the cost of a single
  run with ``max_steps`` steps. (The MAML paper trains Omniglot 5-way with 1 step and tests
  with 3, App. A.1.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn_edu.algorithms.maml import MAML
from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.inner_loop import Params, adapt
from metalearn_edu.losses import accuracy
from metalearn_edu.tasks.episode import TaskDistribution


def adapt_then_predict(
    algorithm: MAML,
    meta_params: Params,
    support_x: Tensor,
    support_y: Tensor,
    x: Tensor,
    *,
    inner_steps: int | None = None,
) -> Tensor:
    """Class probabilities ``[n, ways]`` for inputs ``x`` of one task after adapting on its support.

    ``inner_steps`` defaults to the algorithm's; the steps are first order (test time).
    The support set is passed as ``context``, which a non-transductive model normalises with.
    """
    leaves = {n: p.detach().clone().requires_grad_() for n, p in meta_params.items()}
    with torch.enable_grad():
        adapted = algorithm.adapt(
            leaves, support_x, support_y, inner_steps=inner_steps, first_order=True
        )
    with torch.no_grad():
        logits = algorithm.model.forward(adapted, x, context=support_x)
    return torch.softmax(logits, dim=-1)


def accuracy_by_steps(
    algorithm: MAML,
    meta_params: Params,
    tasks: TaskDistribution,
    *,
    num_tasks: int = 600,
    max_steps: int = 10,
    batch_size: int = 25,
    seed: int = 0,
) -> Tensor:
    """Per-task query accuracy after 0, 1, ..., ``max_steps`` test-time inner steps, as a float64
    tensor ``[num_tasks, max_steps + 1]``.

    The tasks are :func:`metalearn_edu.evaluation.meta_test_tasks`, as for
    :func:`metalearn_edu.evaluation.evaluate`, so both see the same tasks.
    """
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}.")
    params = {n: p.detach() for n, p in meta_params.items()}
    first = next(iter(params.values()))
    rows: list[Tensor] = []
    for sx, sy, qx, qy in meta_test_tasks(
        algorithm.model,
        tasks,
        num_tasks,
        batch_size=batch_size,
        seed=seed,
        device=first.device,
        dtype=first.dtype,
    ):
        base, inner_lr = algorithm.split({n: p.clone() for n, p in params.items()})
        current = {n: p.requires_grad_() for n, p in base.items()}

        def support_loss(p: Params, sx: Tensor = sx, sy: Tensor = sy) -> Tensor:
            return algorithm.loss_fn(algorithm.model.forward(p, sx), sy)

        row = []
        for step in range(max_steps + 1):
            if step > 0:
                with torch.enable_grad():
                    current = adapt(
                        support_loss,
                        current,
                        inner_lr=inner_lr,
                        inner_steps=1,
                        first_order=True,
                        adapt_names=algorithm.adapt_names,
                    )
            with torch.no_grad():
                row.append(accuracy(algorithm.model.forward(current, qx, context=sx), qy))
        rows.append(torch.stack(row))
    return torch.stack(rows).double()
