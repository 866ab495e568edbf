"""Reptile (Nichol, Achiam & Schulman 2018): adapt to each task with a few SGD steps, then move
the initialisation towards the adapted weights,

    φ_i = U^k_{T_i}(θ),       θ ← θ + ε (1/n Σ_i φ_i − θ).

No gradient flows through the inner loop. ``meta_gradient`` returns the direction θ − mean_i φ_i,
so an outer SGD step with learning rate ε *is* the update above (the training loop's Adam treats
it as a gradient, as the Reptile code's Adam variant does).

Differences from the paper's code, to keep one inner loop in the library: the inner optimiser is
plain SGD (the paper uses Adam with β1 = 0) on the full support set at every step (the paper draws
minibatches). Query sets are only used for the reported metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metalearn_edu.algorithms.maml import (
    MAML,
    Metrics,
    TensorMetrics,
    query_metrics,
    read_metrics,
)
from metalearn_edu.inner_loop import Params
from metalearn_edu.losses import accuracy
from metalearn_edu.models.base import check_episode
from metalearn_edu.tasks.episode import Episode


@dataclass
class Reptile(MAML):
    """Reptile; the inner loop is MAML's with ``first_order=True``."""

    inner_steps: int = 5
    first_order: bool = True

    def meta_gradient(
        self, meta_params: Params, episode: Episode, *, sync: bool = True
    ) -> tuple[Params, Metrics | TensorMetrics]:
        """The Reptile direction θ − mean_i φ_i, and metrics before and after adaptation
        (0-d tensors with ``sync=False``, as :meth:`MAML.meta_gradient`)."""
        check_episode(self.model, episode)
        theta = {n: p.detach().requires_grad_() for n, p in meta_params.items()}
        mean_phi = {n: torch.zeros_like(p) for n, p in theta.items()}
        losses, accuracies = [], []
        with torch.enable_grad():
            for i in range(episode.num_tasks):
                phi = self.adapt(
                    theta, episode.support_x[i], episode.support_y[i], first_order=True
                )
                with torch.no_grad():
                    for name in mean_phi:
                        mean_phi[name] += phi[name] / episode.num_tasks
                    prediction = self.model.forward(
                        phi, episode.query_x[i], context=episode.support_x[i]
                    )
                    losses.append(self.loss_fn(prediction, episode.query_y[i]))
                    accuracies.append(accuracy(prediction, episode.query_y[i]))
        direction = {n: theta[n].detach() - mean_phi[n] for n in theta}
        metrics = query_metrics(self, meta_params, episode)
        metrics["post_loss"] = torch.stack(losses).mean()
        metrics["post_accuracy"] = torch.stack(accuracies).mean()
        return direction, metrics if not sync else read_metrics(metrics)
