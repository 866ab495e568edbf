"""Class-disjoint meta-train / meta-validation / meta-test splits of the Omniglot characters.

Every split is over *characters*: a character (with all its drawings and, when rotations are new
classes, all four of its rotations) belongs to exactly one of "train", "val", "test".

Conventions (``convention=``):

``"maml"``
    The MAML code (cbfinn/maml, ``data_generator.py``): all 1623 characters of both archives are
    listed, shuffled with ``random.seed(1); random.shuffle(...)``, and cut into 1100 meta-train,
    100 meta-val and 423 meta-test characters. The original listed folders in ``os.listdir`` order,
    which depends on the file system, so its exact membership cannot be reproduced bit for bit;
    here the list is sorted by ``"<Alphabet>/characterNN"`` first, which makes the split the same
    on every machine, with the same sizes and the same (alphabet-mixing) character.

``"lake"``
    Lake et al.'s background/evaluation division: meta-test is the 20 evaluation alphabets
    (659 characters); of the 30 background alphabets, 5 (one in six, picked by a seed-1 shuffle of
    their sorted names) are meta-val and the other 25 meta-train. Whole alphabets are held out, so
    this split is harder than "maml", whose test characters come from alphabets seen in training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

CONVENTIONS = ("maml", "lake")
SPLITS = ("train", "val", "test")
MAML_SIZES = (1100, 100)  # meta-train, meta-val; meta-test is the rest (423 of 1623)


def split_characters(
    characters: Sequence[str], background: Sequence[bool], convention: str = "maml"
) -> dict[str, list[int]]:
    """Indices of the characters in each of "train", "val" and "test" (sorted, disjoint)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
    if len(characters) != len(background):
        raise ValueError("characters and background must have the same length.")
    if convention == "maml":
        n_train, n_val = MAML_SIZES
        if len(characters) <= n_train + n_val:
            raise ValueError(
                f'convention="maml" needs more than {n_train + n_val} characters, '
                f"got {len(characters)}."
            )
        order = sorted(range(len(characters)), key=lambda i: characters[i])
        random.Random(1).shuffle(order)
        parts = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
    else:
        alphabet = [name.split("/")[0] for name in characters]
        bg = sorted({a for a, b in zip(alphabet, background, strict=True) if b})
        if len(bg) < 2 or all(background):
            raise ValueError(
                'convention="lake" needs at least 2 background alphabets and 1 evaluation alphabet.'
            )
        random.Random(1).shuffle(bg)
        val = set(bg[: max(1, len(bg) // 6)])
        parts = {"train": [], "val": [], "test": []}
        for i, (a, b) in enumerate(zip(alphabet, background, strict=True)):
            parts["test" if not b else "val" if a in val else "train"].append(i)
    return {k: sorted(v) for k, v in parts.items()}
