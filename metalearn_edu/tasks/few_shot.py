"""One N-way K-shot episode from a labelled data set, written plainly for the course (notebook 01).

The protocol of Vinyals et al. (2016), used by MAML (Finn et al. 2017, §5.2): a task picks ``N``
classes (``ways``) from one split of the classes, *relabels* them ``0..N-1`` in the order they were
picked, and takes ``K`` examples of each (``shots``) for the support set and ``Q`` other examples
of each (``queries``) for the query set. Because the label a class gets changes from task to task,
no model can memorise "label 3 is this character": it has to learn each task from its support set.

The data set is a tensor ``images [C, D, *x_shape]`` holding ``D`` examples of each of ``C``
classes (Omniglot: ``[1623, 20, 28, 28]``, see :mod:`metalearn_edu.data.omniglot`). The result is
an :class:`~metalearn_edu.tasks.episode.Episode` of one task, grouped by class:
``support_y = [0]*K + [1]*K + ... + [N-1]*K`` and ``query_y`` likewise with ``Q``.

:class:`metalearn_edu.tasks.omniglot.OmniglotTasks` draws whole meta-batches the same way in one
gather (faster, with rotations); this module draws one task at a time, so it reads like the
definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from metalearn_edu.tasks.episode import Episode


def assemble_episode(images: Tensor, classes: Tensor, drawings: Tensor, shots: int) -> Episode:
    """The episode of one task whose ``c``-th class is ``classes[c]`` (relabelled ``c``).

    ``images`` is ``[C, D, *x_shape]``; ``classes`` is ``[N]`` (original class indices);
    ``drawings`` is ``[N, K + Q]``: for class ``c``, which of its ``D`` examples to use, the first
    ``shots`` (K) for the support set and the rest for the query set. Inputs keep the dtype of
    ``images`` and get a channel dimension when ``x_shape`` is ``(H, W)``; labels are ``int64``.
    """
    classes, drawings = torch.as_tensor(classes), torch.as_tensor(drawings)
    if classes.dim() != 1 or drawings.dim() != 2 or drawings.shape[0] != classes.shape[0]:
        raise ValueError(
            f"classes must be [N] and drawings [N, K+Q], got {tuple(classes.shape)} and "
            f"{tuple(drawings.shape)}."
        )
    if not 0 < shots < drawings.shape[1]:
        raise ValueError(
            f"shots must be between 1 and K+Q-1 = {drawings.shape[1] - 1}, got {shots}."
        )
    ways = classes.shape[0]
    x = images[classes[:, None], drawings]  # [N, K+Q, *x_shape]
    if x.dim() == 4:  # [N, K+Q, H, W]: add the channel dimension models expect
        x = x.unsqueeze(2)
    labels = torch.arange(ways)
    queries = drawings.shape[1] - shots
    return Episode(
        support_x=x[:, :shots].reshape(1, ways * shots, *x.shape[2:]),
        support_y=labels.repeat_interleave(shots)[None],
        query_x=x[:, shots:].reshape(1, ways * queries, *x.shape[2:]),
        query_y=labels.repeat_interleave(queries)[None],
    )


def sample_episode(
    images: Tensor,
    ways: int,
    shots: int,
    queries: int,
    generator: torch.Generator | None = None,
    classes: Sequence[int] | Tensor | None = None,
) -> tuple[Episode, Tensor]:
    """A random ``ways``-way ``shots``-shot task drawn from the classes ``classes`` (a split).

    ``classes`` (default: all ``C`` classes of ``images``) lists the class indices a task may use,
    e.g. the meta-train characters only. Returns the episode and the ``[N]`` original class
    indices, in label order (label ``c`` is class ``classes_used[c]``).

    Randomness, in this order, all from ``generator``: ``torch.randperm(len(classes))[:ways]``
    picks the classes; then, class by class, ``torch.randperm(D)[:shots + queries]`` picks its
    examples.
    """
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    pool = torch.arange(images.shape[0]) if classes is None else torch.as_tensor(classes)
    if ways > len(pool):
        raise ValueError(f"ways={ways} is more than the {len(pool)} classes to choose from.")
    examples = images.shape[1]
    if shots + queries > examples:
        raise ValueError(
            f"shots + queries = {shots + queries} is more than the {examples} examples per class."
        )
    chosen = pool[torch.randperm(len(pool), generator=generator)[:ways]]
    drawings = torch.stack(
        [torch.randperm(examples, generator=generator)[: shots + queries] for _ in range(ways)]
    )
    return assemble_episode(images, chosen, drawings, shots), chosen


def nearest_neighbour_predict(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
    """Label of the nearest support example (Euclidean distance on raw inputs) for each query.

    A learner that learns nothing across tasks: the baseline every few-shot method must beat.
    Shapes ``[S, *x_shape]``, ``[S]``, ``[Q, *x_shape]`` -> ``[Q]``; batched over a leading task
    dimension as well (``[T, S, ...]`` etc.).
    """
    s = support_x.flatten(start_dim=support_y.dim()).to(torch.float64)
    q = query_x.flatten(start_dim=support_y.dim()).to(torch.float64)
    nearest = torch.cdist(q, s).argmin(dim=-1)
    return torch.gather(support_y, -1, nearest)
