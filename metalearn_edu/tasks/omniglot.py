"""N-way K-shot Omniglot tasks (Vinyals et al. 2016; MAML, Finn et al. 2017, §5.2).

A task picks ``ways`` (N) characters of one split, relabels them 0..N-1 in random order, and takes
``shots`` (K) drawings of each for the support set and ``queries`` (Q) other drawings for the query
set. Episodes are drawn on the fly from the uint8 cache (:mod:`metalearn_edu.data.omniglot`) with a
``torch.Generator``, all tasks of a meta-batch at once, so a seed gives the same episodes on any
machine.

Images are float32 ``[T, N*K, 1, 28, 28]`` (support) and ``[T, N*Q, 1, 28, 28]`` (query), ink 1 and
background 0 as in the MAML code (``1 - png / 255``), grouped by class: the support labels of every
task are ``[0]*K + [1]*K + ... + [N-1]*K``.

With ``device=`` the uint8 images live on that device (moved once, at construction) and an
episode is made there: only the random choices are drawn on the CPU (:meth:`OmniglotTasks.draw`),
the gather and the conversion to float run on the device (:meth:`OmniglotTasks.gather`), so a
training loop on a GPU pays little CPU time per meta-batch. The episodes are bitwise the same as
without ``device``.

Rotations by multiples of 90 degrees (``rotations=``):

- ``"augment"`` (MAML code): each class of each task is turned by a random multiple of 90 degrees,
  the same for all its drawings in that task; the classes are the characters.
- ``"classes"`` (Vinyals et al., ProtoNets, Reptile): each (character, rotation) pair is a class of
  its own, so a split has four times as many classes; all four rotations of a character stay in
  the same split.
- ``"none"``: upright characters only.
"""

from __future__ import annotations

import os

import torch

from metalearn_edu.data.omniglot import Omniglot, load_omniglot
from metalearn_edu.data.splits import CONVENTIONS, SPLITS, split_characters
from metalearn_edu.tasks.episode import Episode

ROTATIONS = ("augment", "classes", "none")


# The float32 value of each of the 256 pixel levels, level / 255, divided on the CPU. Off the CPU
# the pixels are looked up here instead of divided, because a division need not give the same bits
# on every device: CUDA divides by a number by multiplying with its reciprocal, which changes the
# last bit of 126 of the 256 levels.
LEVELS = torch.arange(256, dtype=torch.float32).div_(255.0)


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _to_device(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The small index tensor ``rows`` copied to ``device``; to a GPU without waiting for it."""
    if rows.device.type == "cpu" and device.type == "cuda":  # from pinned memory, asynchronously
        return rows.pin_memory().to(device, non_blocking=True)
    return rows.to(device)  # no copy if already there (the CPU)


class OmniglotTasks:
    """The ``TaskDistribution`` of N-way K-shot Omniglot tasks over one split of the characters.

    ``data`` may be given (e.g. one :class:`Omniglot` shared by the train/val/test samplers);
    otherwise it is loaded with ``load_omniglot(root, cache_dir=...)``. ``device`` (e.g.
    ``"cuda"``): where the images are kept and the episodes made; ``None``: the CPU.
    """

    def __init__(
        self,
        split: str = "train",
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        rotations: str = "augment",
        convention: str = "maml",
        root: str | os.PathLike | None = None,
        *,
        data: Omniglot | None = None,
        cache_dir: str | os.PathLike | None = None,
        resize: str = "lanczos",
        device: torch.device | str | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        if rotations not in ROTATIONS:
            raise ValueError(f"rotations must be one of {ROTATIONS}, got {rotations!r}.")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
        for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            _positive(name, value)
        if data is None:
            data = load_omniglot(root, cache_dir=cache_dir, resize=resize)
        drawings = data.images.shape[1]
        if shots + queries > drawings:
            raise ValueError(
                f"shots + queries = {shots} + {queries} = {shots + queries} is more than the "
                f"{drawings} drawings of each Omniglot character."
            )
        self.split, self.convention, self.rotations = split, convention, rotations
        self.ways, self.shots, self.queries = ways, shots, queries
        self.device = device
        self.character_ids = split_characters(
            data.characters, data.background.tolist(), convention
        )[split]
        self.character_names = [data.characters[i] for i in self.character_ids]
        self.num_classes = len(self.character_ids) * (4 if rotations == "classes" else 1)
        if ways > self.num_classes:
            raise ValueError(
                f"ways={ways} is larger than the {self.num_classes} classes of split {split!r} "
                f"(convention {convention!r}, rotations {rotations!r})."
            )
        self.images = data.images[self.character_ids].contiguous()  # uint8 [C, 20, 28, 28]
        # the quarter turns, computed once, so that sampling is only gathers (support, query):
        # uint8 [C * R * 20, 28, 28] with R = 4 rotations (R = 1 when rotations="none")
        self._turns = 1 if rotations == "none" else 4
        rotated = [torch.rot90(self.images, k, dims=(-2, -1)) for k in range(self._turns)]
        self._rotated = torch.stack(rotated, dim=1).reshape(-1, *self.images.shape[-2:])
        self._drawings = drawings
        # the labels of one task, the same in every task of every episode: 0..0 1..1 ... N-1..N-1
        self._support_labels = torch.arange(ways).repeat_interleave(shots)
        self._query_labels = torch.arange(ways).repeat_interleave(queries)
        if device is not None:  # moved once here, never again in sample()
            self._rotated = self._rotated.to(device)
            self._support_labels = self._support_labels.to(device)
            self._query_labels = self._query_labels.to(device)
        # None: the images are on the CPU, where dividing by 255 gives the LEVELS exactly
        self._levels = None if self._rotated.device.type == "cpu" else LEVELS.to(device)

    def __repr__(self) -> str:
        return (
            f"OmniglotTasks(split={self.split!r}, ways={self.ways}, shots={self.shots}, "
            f"queries={self.queries}, rotations={self.rotations!r}, "
            f"convention={self.convention!r}, classes={self.num_classes})"
        )

    def class_name(self, c: int) -> str:
        """``"<Alphabet>/characterNN"`` of class ``c`` (plus ``"/rot090"`` etc. if rotated)."""
        if self.rotations == "classes":
            return f"{self.character_names[c // 4]}/rot{90 * (c % 4):03d}"
        return self.character_names[c]

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        """A batch of ``meta_batch_size`` tasks as an :class:`Episode` (on ``device``)."""
        T, K = meta_batch_size, self.shots
        rows = _to_device(self.draw(meta_batch_size, generator), self._rotated.device)
        return Episode(  # gathered apart, support and query come out grouped by class
            support_x=self.gather(rows[:, :, :K]).flatten(1, 2),  # [T, N*K, 1, 28, 28]
            support_y=self._support_labels.repeat(T, 1),  # a copy: the caller may change it
            query_x=self.gather(rows[:, :, K:]).flatten(1, 2),  # [T, N*Q, 1, 28, 28]
            query_y=self._query_labels.repeat(T, 1),
        )

    def draw(self, meta_batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random part of :meth:`sample`, on the CPU: which image each example of each task is.

        Returns int64 ``[T, N, K+Q]``: rows of the table of rotated images (for class ``n`` of
        task ``t``, its K support drawings, then its Q query drawings). ``generator`` is a CPU
        generator whatever the device, so a seed gives the same episodes everywhere.
        """
        _positive("meta_batch_size", meta_batch_size)
        T, N, K, Q = meta_batch_size, self.ways, self.shots, self.queries
        g = generator
        # N distinct classes per task: the N largest of C random keys (float64 keys, so ties,
        # which could be broken differently on another machine, practically never happen).
        keys = torch.rand(T, self.num_classes, generator=g, dtype=torch.float64)
        classes = keys.topk(N, dim=1).indices  # [T, N]
        # K + Q distinct drawings per class
        keys = torch.rand(T, N, self._drawings, generator=g, dtype=torch.float64)
        draws = keys.argsort(dim=2)[..., : K + Q]  # [T, N, K+Q]
        if self.rotations == "classes":
            chars, turns = classes // 4, classes % 4
        elif self.rotations == "augment":
            chars, turns = classes, torch.randint(0, 4, (T, N), generator=g)
        else:
            chars, turns = classes, torch.zeros_like(classes)
        # rows of the rotated images, indexed as [C, R, 20] flattened
        return ((chars * self._turns + turns) * self._drawings)[:, :, None] + draws

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The images of table rows ``rows`` (from :meth:`draw`) as float32 ``[*rows.shape, 1,
        28, 28]`` in [0, 1], made where the images are kept: one gather and one conversion."""
        rows = _to_device(rows, self._rotated.device)  # no copy if already there
        x = self._rotated.index_select(0, rows.flatten())  # uint8
        if self._levels is None:
            x = x.to(torch.float32).div_(255.0)
        else:
            x = self._levels[x.long()]  # the same numbers, looked up
        return x.view(*rows.shape, 1, *self._rotated.shape[1:])


def omniglot_splits(
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    rotations: str = "augment",
    convention: str = "maml",
    root: str | os.PathLike | None = None,
    **kwargs,
) -> dict[str, OmniglotTasks]:
    """The train, val and test samplers of one convention, sharing one loaded cache."""
    data = kwargs.pop("data", None)
    if data is None:  # load once, with the same preprocessing the samplers are asked for
        cache_dir = kwargs.pop("cache_dir", None)
        data = load_omniglot(root, cache_dir=cache_dir, resize=kwargs.get("resize", "lanczos"))
    return {
        s: OmniglotTasks(s, ways, shots, queries, rotations, convention, data=data, **kwargs)
        for s in SPLITS
    }
