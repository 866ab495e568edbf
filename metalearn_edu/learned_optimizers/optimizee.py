"""A small network as the optimizee (Andrychowicz et al. 2016, §3.2: an MLP with one hidden layer of
20 sigmoid units, cross-entropy, minibatches of 128, 100 steps).

A learned optimizer sees one long vector of coordinates, so the network's parameter ``dict`` is
flattened into a vector θ and rebuilt from it for every forward pass. Each call of the objective
draws a fresh minibatch, as stochastic training does.

Data. The paper uses MNIST; the course needs data that is on the machine already. scikit-learn's
8x8 digits are not a dependency of this project, so :func:`omniglot_classification` builds a
10-way problem from the Omniglot cache the course downloads anyway (20 drawings per character:
15 to train on, 5 held out). Without that cache, any ``(x, y)`` tensors will do.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.unroll import LossFn
from metalearn_edu.models.base import FunctionalModel

ParamShapes = list[tuple[str, torch.Size]]


def flatten_params(params: Params) -> tuple[Tensor, ParamShapes]:
    """θ as one vector, and the names and shapes to rebuild the ``dict`` from it."""
    shapes = [(name, p.shape) for name, p in params.items()]
    return torch.cat([p.reshape(-1) for p in params.values()]), shapes


def unflatten_params(theta: Tensor, shapes: ParamShapes) -> Params:
    """The inverse of :func:`flatten_params` for one vector ``theta [n]``."""
    total = sum(shape.numel() for _, shape in shapes)
    if theta.dim() != 1 or theta.numel() != total:
        raise ValueError(
            f"theta must be a vector of {total} entries for these parameters, got shape "
            f"{tuple(theta.shape)}."
        )
    params, start = {}, 0
    for name, shape in shapes:
        params[name] = theta[start : start + shape.numel()].view(shape)
        start += shape.numel()
    return params


def classification_objective(
    model: FunctionalModel,
    x: Tensor,
    y: Tensor,
    shapes: ParamShapes,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
) -> LossFn:
    """``θ [B, n] -> [B]``: the cross-entropy of ``B`` networks, each on a fresh random minibatch
    of ``batch_size`` examples of ``(x, y)`` (the whole set when it is smaller)."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x and y must hold the same positive number of examples, got {x.shape[0]} and "
            f"{y.shape[0]}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")

    def loss_fn(theta: Tensor) -> Tensor:
        losses = []
        for row in theta:
            if batch_size >= x.shape[0]:
                xb, yb = x, y
            else:
                index = torch.randperm(x.shape[0], generator=generator)[:batch_size]
                xb, yb = x[index], y[index]
            logits = model.forward(unflatten_params(row, shapes), xb)
            losses.append(F.cross_entropy(logits, yb))
        return torch.stack(losses)

    return loss_fn


def accuracy_of(
    model: FunctionalModel, theta: Tensor, shapes: ParamShapes, x: Tensor, y: Tensor
) -> Tensor:
    """Accuracy ``[B]`` of each of the ``B`` networks in ``θ [B, n]`` on ``(x, y)``."""
    with torch.no_grad():
        return torch.stack(
            [
                (model.forward(unflatten_params(row, shapes), x).argmax(-1) == y).float().mean()
                for row in theta
            ]
        )


def omniglot_classification(
    ways: int = 10,
    split: str = "train",
    seed: int = 0,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``ways`` Omniglot characters as one ordinary classification problem: flattened 28x28 images
    (784 inputs), 15 drawings per class to train on and 5 to test on:
    ``(train_x, train_y, test_x, test_y)``. Needs the Omniglot download or cache."""
    from metalearn_edu.tasks.omniglot import OmniglotTasks

    tasks = OmniglotTasks(
        split, ways=ways, shots=15, queries=5, rotations="none", root=root, cache_dir=cache_dir
    )
    episode = tasks.sample(1, torch.Generator().manual_seed(seed))
    return (
        episode.support_x[0].flatten(1),
        episode.support_y[0],
        episode.query_x[0].flatten(1),
        episode.query_y[0],
    )
