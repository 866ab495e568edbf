"""Adapt-then-predict and accuracy along the adaptation path, checked against ``evaluate``."""

from __future__ import annotations

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.adaptation import accuracy_by_steps, adapt_then_predict
from metalearn_edu.algorithms import ANIL, FOMAML, MAML, MetaSGD
from metalearn_edu.evaluation import evaluate
from metalearn_edu.models import Conv4
from metalearn_edu.tasks.episode import Episode


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


class ImageTasks:
    """Random 3-way 2-shot tasks of 8x8 images whose class shifts the mean brightness."""

    ways, shots, queries = 3, 2, 4

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        def part(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.arange(self.ways).repeat_interleave(k).expand(meta_batch_size, -1)
            x = torch.rand(meta_batch_size, self.ways * k, 1, 8, 8, generator=generator)
            return x + 0.3 * y[..., None, None, None], y.contiguous()

        sx, sy = part(self.shots)
        qx, qy = part(self.queries)
        return Episode(sx, sy, qx, qy)


def algorithm(kind: str, transductive: bool = True) -> MAML:
    model = Conv4(ways=3, image_size=8, hidden=4, transductive=transductive)
    return {"maml": MAML, "fomaml": FOMAML, "anil": ANIL, "metasgd": MetaSGD}[kind](
        model, inner_lr=0.3, inner_steps=2
    )


def meta_params(alg: MAML) -> dict[str, torch.Tensor]:
    params = alg.init_meta_params(torch.Generator().manual_seed(0))
    return {n: p.double() for n, p in params.items()}


@pytest.mark.parametrize("kind", ["maml", "fomaml", "anil", "metasgd"])
def test_each_column_is_what_evaluate_reports_for_that_many_steps(kind):
    alg, tasks = algorithm(kind), ImageTasks()
    params = meta_params(alg)
    table = accuracy_by_steps(alg, params, tasks, num_tasks=7, max_steps=3, batch_size=3, seed=4)
    assert table.shape == (7, 4) and table.dtype == torch.float64
    for k in (1, 2, 3):
        result = evaluate(alg, params, tasks, num_tasks=7, inner_steps=k, batch_size=3, seed=4)
        assert table[:, k].mean().item() == pytest.approx(result["accuracy"], abs=1e-12)
        assert table[:, 0].mean().item() == pytest.approx(result["pre_accuracy"], abs=1e-12)
    assert table[:, 1:].ne(table[:, :1]).any()  # the steps change the predictions


def test_adapt_then_predict_gives_the_probabilities_evaluate_scores():
    alg, tasks = algorithm("maml"), ImageTasks()
    params = meta_params(alg)
    episode = tasks.sample(4, torch.Generator().manual_seed(1)).to(dtype=torch.float64)
    correct = []
    for i in range(episode.num_tasks):
        probs = adapt_then_predict(
            alg, params, episode.support_x[i], episode.support_y[i], episode.query_x[i]
        )
        assert probs.shape == (12, 3) and not probs.requires_grad
        assert torch.allclose(probs.sum(dim=1), torch.ones(12, dtype=torch.float64))
        correct.append((probs.argmax(1) == episode.query_y[i]).double().mean())
    result = evaluate(alg, params, _Fixed(episode), num_tasks=4, batch_size=4)
    assert torch.stack(correct).mean().item() == pytest.approx(result["accuracy"], abs=1e-12)


def test_more_steps_change_the_prediction_and_meta_params_are_untouched():
    alg = algorithm("maml")
    params = meta_params(alg)
    before = {n: p.clone() for n, p in params.items()}
    episode = ImageTasks().sample(1, torch.Generator().manual_seed(2)).to(dtype=torch.float64)
    sx, sy, qx = episode.support_x[0], episode.support_y[0], episode.query_x[0]
    one = adapt_then_predict(alg, params, sx, sy, qx, inner_steps=1)
    five = adapt_then_predict(alg, params, sx, sy, qx, inner_steps=5)
    assert not torch.allclose(one, five)
    assert all(torch.equal(before[n], params[n]) for n in params)


def test_non_transductive_prediction_of_one_image_does_not_depend_on_the_others():
    episode = ImageTasks().sample(1, torch.Generator().manual_seed(3)).to(dtype=torch.float64)
    sx, sy, qx = episode.support_x[0], episode.support_y[0], episode.query_x[0]
    for transductive, independent in ((False, True), (True, False)):
        alg = algorithm("maml", transductive=transductive)
        params = meta_params(alg)
        batch = adapt_then_predict(alg, params, sx, sy, qx)
        alone = adapt_then_predict(alg, params, sx, sy, qx[:1])
        assert torch.allclose(batch[:1], alone, atol=1e-12) == independent


def test_bad_sizes_are_refused():
    alg = algorithm("maml")
    with pytest.raises(ValueError, match="num_tasks"):
        accuracy_by_steps(alg, meta_params(alg), ImageTasks(), num_tasks=0)
    with pytest.raises(ValueError, match="max_steps"):
        accuracy_by_steps(alg, meta_params(alg), ImageTasks(), max_steps=-1)


class _Fixed:
    """A task distribution that returns one given episode."""

    def __init__(self, episode: Episode):
        self.episode = episode

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        return self.episode
