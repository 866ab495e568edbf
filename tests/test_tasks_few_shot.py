"""One N-way K-shot episode from a labelled data set: shapes, relabelling, splits, baseline."""

import pytest
import torch

from metalearn_edu.tasks.few_shot import (
    assemble_episode,
    nearest_neighbour_predict,
    sample_episode,
)


def dataset(classes=12, examples=6, size=4):
    """images[c, d] is filled with the number 100 c + d, so every image says where it came from."""
    ids = 100 * torch.arange(classes)[:, None] + torch.arange(examples)[None, :]
    return ids[:, :, None, None].expand(classes, examples, size, size).to(torch.float32)


def origin(x):
    """(class, drawing) of images built by dataset()."""
    v = x.flatten(start_dim=-3)[..., 0].long()
    return v // 100, v % 100


def test_assemble_relabels_in_the_given_order_grouped_by_class():
    images = dataset()
    classes = torch.tensor([7, 2, 9])
    drawings = torch.tensor([[0, 1, 2], [5, 4, 3], [1, 3, 5]])
    e = assemble_episode(images, classes, drawings, shots=1)
    assert e.support_x.shape == (1, 3, 1, 4, 4) and e.query_x.shape == (1, 6, 1, 4, 4)
    assert e.support_y.tolist() == [[0, 1, 2]] and e.query_y.tolist() == [[0, 0, 1, 1, 2, 2]]
    assert e.support_y.dtype == torch.int64
    c, d = origin(e.support_x[0])
    assert c.tolist() == [7, 2, 9] and d.tolist() == [0, 5, 1]
    c, d = origin(e.query_x[0])
    assert c.tolist() == [7, 7, 2, 2, 9, 9] and d.tolist() == [1, 2, 4, 3, 3, 5]


def test_assemble_keeps_extra_input_dimensions():
    images = torch.zeros(5, 4, 3, 8, 8)
    e = assemble_episode(images, torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]]), 1)
    assert e.support_x.shape == (1, 2, 3, 8, 8)


@pytest.mark.parametrize(("ways", "shots", "queries"), [(5, 1, 3), (3, 2, 4), (12, 1, 1)])
def test_sample_episode_shapes_labels_and_distinct_examples(ways, shots, queries):
    images = dataset()
    e, classes = sample_episode(images, ways, shots, queries, torch.Generator().manual_seed(0))
    assert e.support_x.shape == (1, ways * shots, 1, 4, 4)
    assert e.query_x.shape == (1, ways * queries, 1, 4, 4)
    assert sorted(e.support_y[0].tolist()) == sorted(list(range(ways)) * shots)
    assert len(set(classes.tolist())) == ways
    sc, sd = origin(e.support_x[0])
    qc, qd = origin(e.query_x[0])
    assert (sc == classes[e.support_y[0]]).all() and (qc == classes[e.query_y[0]]).all()
    pairs = list(zip(sc.tolist() + qc.tolist(), sd.tolist() + qd.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)  # no example is used twice


def test_sample_episode_draws_only_from_the_given_split_and_is_seeded():
    images = dataset()
    split = [1, 4, 6, 8, 11]
    seen = set()
    for seed in range(30):
        _, classes = sample_episode(images, 3, 1, 2, torch.Generator().manual_seed(seed), split)
        seen |= set(classes.tolist())
    assert seen == set(split)
    a = sample_episode(images, 3, 1, 2, torch.Generator().manual_seed(5), split)
    b = sample_episode(images, 3, 1, 2, torch.Generator().manual_seed(5), split)
    assert torch.equal(a[0].query_x, b[0].query_x) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ways": 13}, "more than the 12 classes"),
        ({"shots": 4, "queries": 3}, "more than the 6 examples"),
        ({"ways": 0}, "ways must be a positive integer"),
    ],
)
def test_sample_episode_rejects_impossible_tasks(kwargs, message):
    args = {"ways": 3, "shots": 1, "queries": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        sample_episode(dataset(), **args)


def test_nearest_neighbour_predicts_the_closest_support_label():
    support_x = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    support_y = torch.tensor([2, 0, 1])
    query_x = torch.tensor([[1.0, 1.0], [9.0, 2.0], [1.0, 8.0]])
    assert nearest_neighbour_predict(support_x, support_y, query_x).tolist() == [2, 0, 1]
    batched = nearest_neighbour_predict(support_x[None], support_y[None], query_x[None])
    assert batched.tolist() == [[2, 0, 1]]
