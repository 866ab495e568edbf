"""Small random episodes and a finite-difference gradient, shared by the MAML-family tests."""

from __future__ import annotations

from collections.abc import Callable

import torch

from metalearn_edu.tasks.episode import Episode

Params = dict[str, torch.Tensor]


def regression_episode(tasks=3, support=5, query=6, features=1, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return Episode(
        r(tasks, support, features),
        r(tasks, support, 1),
        r(tasks, query, features),
        r(tasks, query, 1),
    )


def classification_episode(tasks=2, ways=3, shots=2, queries=2, image_size=8, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)

    def images(n):
        return torch.randn(tasks, n, 1, image_size, image_size, generator=g, dtype=torch.float64)

    def labels(k):
        return torch.arange(ways).repeat(k).expand(tasks, -1).clone()

    return Episode(images(ways * shots), labels(shots), images(ways * queries), labels(queries))


def float64(params: Params) -> Params:
    return {n: p.detach().to(torch.float64) for n, p in params.items()}


def finite_difference_grad(
    f: Callable[[Params], torch.Tensor], params: Params, h: float = 1e-5
) -> Params:
    """Central differences (f(θ + h e_j) − f(θ − h e_j)) / 2h, entry by entry."""
    grads = {}
    for name, p in params.items():
        g = torch.zeros_like(p)
        for j in range(p.numel()):
            plus, minus = p.clone(), p.clone()
            plus.view(-1)[j] += h
            minus.view(-1)[j] -= h
            g.view(-1)[j] = (f({**params, name: plus}) - f({**params, name: minus})).item() / (
                2 * h
            )
        grads[name] = g
    return grads


def meta_loss(algorithm, episode: Episode) -> Callable[[Params], torch.Tensor]:
    """θ -> mean over tasks of the post-adaptation query loss (the MAML meta-objective)."""

    def f(params: Params) -> torch.Tensor:
        leaves = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
        losses = [
            algorithm.task_objective(leaves, *(t[i] for t in _fields(episode)))[0]
            for i in range(episode.num_tasks)
        ]
        return torch.stack(losses).mean().detach()

    return f


def _fields(episode: Episode):
    return episode.support_x, episode.support_y, episode.query_x, episode.query_y


def max_abs_diff(a: Params, b: Params) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


class one_thread:
    """Run torch on one thread. On a small shared CPU, two intra-op threads competing with other
    processes made these tiny meta-iterations 10-30x slower (measured), one thread does not."""

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)
