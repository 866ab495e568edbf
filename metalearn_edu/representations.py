"""How much does the inner loop change what each layer computes? Representation similarity.

Raghu et al. (2020, "Rapid learning or feature reuse?") compare each layer's representation of a
task's examples before the inner loop (parameters θ) and after it (θ'). If the body's layers
barely change while the head changes a lot, MAML's inner loop is mostly *reusing* features, and
adapting the head alone (ANIL) should do as well.

We measure the similarity with **linear centered kernel alignment** (CKA; Kornblith, Norouzi, Lee
and Hinton, ICML 2019). For the representations X ∈ R^{n×p} and Y ∈ R^{n×q} of the same n
examples, with the Gram matrices K = XXᵀ, L = YYᵀ and the centering matrix H = I − 11ᵀ/n,

    HSIC(K, L) = tr(K H L H) / (n − 1)²,                    (Hilbert-Schmidt independence criterion)
    CKA(K, L)  = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)),

which for column-centred X and Y is the feature-space form

    CKA(X, Y) = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F).

CKA lies in [0, 1]; it is 1 for identical representations and is invariant to orthogonal
transformations and isotropic scaling of either one (but not to arbitrary invertible linear maps,
which is what lets it compare representations wider than the number of examples, as a layer of
a convolutional network on 25 images is). With one feature each, it is the squared Pearson
correlation of x and y.

:func:`layer_similarity` applies it to every layer of a model on meta-test tasks, before and after
0 < k <= ``max_steps`` test-time inner steps, on the same tasks that
:func:`metalearn_edu.evaluation.evaluate` and :func:`metalearn_edu.adaptation.accuracy_by_steps`
draw with the same seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn_edu.algorithms.maml import MAML
from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.inner_loop import Params, adapt
from metalearn_edu.tasks.episode import TaskDistribution


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of two representations of the same n examples, a 0-dim tensor in [0, 1].

    ``x`` is ``[n, ...]`` and ``y`` is ``[n, ...]``; each example's features are flattened (a
    convolutional layer's ``[C, H, W]`` map becomes one vector of C·H·W features). Computed from
    the n×n Gram matrices of the centred features, ⟨K, L⟩_F / (‖K‖_F ‖L‖_F), which equals
    ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) and costs n² per feature instead of p·q.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"CKA compares two representations of the same examples, but x has {x.shape[0]} "
            f"rows and y has {y.shape[0]}."
        )
    if x.shape[0] < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {x.shape[0]}.")
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    gram_x, gram_y = x @ x.T, y @ y.T  # K and L; centred features give centred Gram matrices
    norm_x, norm_y = torch.linalg.matrix_norm(gram_x), torch.linalg.matrix_norm(gram_y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError(
            "CKA is undefined for a representation that is the same for every example "
            "(its centred features are all zero)."
        )
    return (gram_x * gram_y).sum() / (norm_x * norm_y)


def layer_similarity(
    algorithm: MAML,
    meta_params: Params,
    tasks: TaskDistribution,
    *,
    num_tasks: int = 100,
    max_steps: int = 1,
    batch_size: int = 25,
    seed: int = 0,
) -> Tensor:
    """Per-layer CKA between each task's query representations before and after adaptation.

    Returns a float64 tensor ``[num_tasks, max_steps, layers]``: entry ``[t, k - 1, j]`` is
    ``linear_cka`` of layer ``algorithm.model.layer_names[j]`` on task t's query set under the
    meta-learned θ and under θ' after k test-time inner steps (first order, the algorithm's own
    inner loop: all parameters for MAML, the head for ANIL, learned rates for Meta-SGD). A layer
    the inner loop does not touch, nor any layer before it, scores 1 (to rounding).
    """
    model = algorithm.model
    if not hasattr(model, "layer_outputs"):
        raise TypeError(
            f"{type(model).__name__} does not return its layers' outputs (layer_outputs); "
            "layer_similarity needs a model that does, such as Conv4."
        )
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
    names: tuple[str, ...] = model.layer_names
    params = {n: p.detach() for n, p in meta_params.items()}
    first = next(iter(params.values()))
    rows: list[Tensor] = []
    for sx, sy, qx, _ in meta_test_tasks(
        model,
        tasks,
        num_tasks,
        batch_size=batch_size,
        seed=seed,
        device=first.device,
        dtype=first.dtype,
    ):
        base, inner_lr = algorithm.split({n: p.clone() for n, p in params.items()})
        with torch.no_grad():
            before = model.layer_outputs(base, qx, context=sx)
        current = {n: p.requires_grad_() for n, p in base.items()}

        def support_loss(p: Params, sx: Tensor = sx, sy: Tensor = sy) -> Tensor:
            return algorithm.loss_fn(model.forward(p, sx), sy)

        row = []
        for _ in range(max_steps):
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
                after = model.layer_outputs(current, qx, context=sx)
                row.append(
                    torch.stack([linear_cka(before[n].double(), after[n].double()) for n in names])
                )
        rows.append(torch.stack(row))
    return torch.stack(rows)
