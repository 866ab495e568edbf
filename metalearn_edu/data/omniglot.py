"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015), offline-first, in a compact 28x28 cache.

Where the two archives come from, in order:

1. ``root`` (an argument) or, without it, the folder named by ``$METALEARN_EDU_OMNIGLOT``: a folder
   holding ``images_background.zip`` and ``images_evaluation.zip``. Nothing is downloaded then.
2. Otherwise ``data_dir()/omniglot``, where missing archives are downloaded from the official
   repository (``brendenlake/omniglot``, folder ``python/``).

Each archive is accepted only if its size and sha256 match the official file or the known repacked
copy (same PNGs, other zip container). The PNGs are read straight from the zips (no extraction),
resized to 28x28 as in MAML (Finn et al. 2017, App. A.1: "downsampled to 28x28") and stored once
as a ``uint8`` tensor ``[characters, 20, 28, 28]`` with ink = 255 and background = 0, so that
``images / 255`` is the MAML code's input ``1 - png / 255``. The cache lives in
``data_dir()/cache`` and loads in well under a second.

Two resizings are offered (``resize=``):

- ``"lanczos"`` (default): the 1-bit PNG is converted to 8-bit grey, then resized with Pillow's
  LANCZOS filter: anti-aliased strokes with grey levels. This is what the MAML paper describes.
- ``"maml-code"``: what the MAML code's ``im.resize((28, 28), resample=Image.LANCZOS)`` actually
  does on these 1-bit images: Pillow ignores the filter for mode "1" and uses nearest neighbour,
  so the pixels stay binary.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
import urllib.error
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalearn_edu.config import OMNIGLOT_ENV, data_dir
from metalearn_edu.data.download import (
    Checksum,
    TransferError,
    check_member_name,
    download,
    verify_file,
)

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
ARCHIVES = ("images_background.zip", "images_evaluation.zip")
# Accepted (size, sha256) per archive: the official files and the repacked offline copy
# (../shared/data/omniglot/README.md; official values as in TFDS url_checksums/omniglot.txt).
CHECKSUMS: dict[str, tuple[Checksum, ...]] = {
    "images_background.zip": (
        Checksum(
            9_464_212,
            "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
            "official",
        ),
        Checksum(
            8_910_008,
            "10ddf92397b657f0c9aee9da8f65a87ea833c351260da5c2f4d47603a913de75",
            "repacked",
        ),
    ),
    "images_evaluation.zip": (
        Checksum(
            6_462_886,
            "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
            "official",
        ),
        Checksum(
            6_082_840,
            "9413634716ad200eeba34a82956600a77af0554dcdb86fa059b9c6b27f4475c7",
            "repacked",
        ),
    ),
}
DRAWINGS = 20  # every character is drawn by 20 people
IMAGE_SIZE = 28
CACHE_VERSION = 1
RESIZES = ("lanczos", "maml-code")

_MEMBER = re.compile(
    r"^(images_background|images_evaluation)/([^/]+)/(character\d+)/(\d+)_(\d+)\.png$"
)


@dataclass(frozen=True)
class Omniglot:
    """All Omniglot characters as a tensor, with their names.

    ``images`` is ``uint8 [C, 20, 28, 28]`` (ink 255, background 0); ``characters[c]`` is
    ``"<Alphabet>/characterNN"``; ``background[c]`` is True for the 30 background alphabets
    (Lake et al.'s training set) and False for the 20 evaluation alphabets.
    """

    images: Tensor
    characters: tuple[str, ...]
    background: Tensor

    def __post_init__(self) -> None:
        c = len(self.characters)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[0] != c:
            raise ValueError(
                f"images must be uint8 [characters={c}, drawings, H, W], got "
                f"{self.images.dtype} {tuple(self.images.shape)}."
            )
        if self.background.shape != (c,):
            raise ValueError(
                f"background must have shape ({c},), got {tuple(self.background.shape)}."
            )

    @property
    def alphabets(self) -> tuple[str, ...]:
        """The alphabet of each character."""
        return tuple(name.split("/")[0] for name in self.characters)

    def alphabet_names(self, background: bool | None = None) -> list[str]:
        """Sorted alphabet names (only background or evaluation ones if ``background`` is set)."""
        keep = self.background.tolist()
        return sorted(
            {
                a
                for a, b in zip(self.alphabets, keep, strict=True)
                if background is None or b == background
            }
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Alphabets, characters and images of the background and evaluation sets."""
        out = {}
        for name, flag in (("background", True), ("evaluation", False)):
            chars = int((self.background == flag).sum())
            out[name] = {
                "alphabets": len(self.alphabet_names(flag)),
                "characters": chars,
                "images": chars * self.images.shape[1],
            }
        return out


# ----------------------------------------------------------------------------- finding archives


def missing_archives_message(folder: Path | None = None, base_url: str = OMNIGLOT_URL) -> str:
    """Exactly what to download and where to put it."""
    target = folder if folder is not None else data_dir() / "omniglot"
    urls = "\n".join(f"    {base_url}/{name}" for name in ARCHIVES)
    return (
        f"Omniglot archives not found. Download these two files:\n{urls}\n"
        f"and put them in {target}\n"
        f"or in any folder that you then name with the environment variable {OMNIGLOT_ENV} "
        f"(or pass root=<folder>)."
    )


def locate_archives(
    root: str | os.PathLike | None = None,
    *,
    download_missing: bool = True,
    base_url: str = OMNIGLOT_URL,
    checksums: Mapping[str, Sequence[Checksum]] = CHECKSUMS,
    progress: bool = True,
    retries: int = 3,
    backoff: float = 1.0,
) -> dict[str, Path]:
    """Paths of the two verified archives, downloading them if needed and allowed.

    With ``root`` (or ``$METALEARN_EDU_OMNIGLOT``) the archives must be in that folder: nothing is
    downloaded. Without either, ``data_dir()/omniglot`` is used and missing archives are
    downloaded from ``base_url``. A file with the wrong size or sha256 raises ``ValueError``;
    archives that cannot be found or fetched raise ``FileNotFoundError`` saying what to download.
    """
    source = "root"
    if root is None and os.environ.get(OMNIGLOT_ENV):
        root, source = os.environ[OMNIGLOT_ENV], OMNIGLOT_ENV
    offline = root is not None
    folder = Path(root).expanduser() if offline else data_dir() / "omniglot"
    if offline and not folder.is_dir():
        raise FileNotFoundError(
            f"Omniglot folder {source}={str(folder)!r} does not exist.\n"
            + missing_archives_message(folder, base_url)
        )
    found: dict[str, Path] = {}
    for name in ARCHIVES:
        path = folder / name
        if path.is_file():
            verify_file(path, checksums[name])
        elif offline:
            present = sorted(p.name for p in folder.iterdir())[:10]
            raise ValueError(
                f"{source}={str(folder)!r} has the wrong layout: it must hold {ARCHIVES[0]} and "
                f"{ARCHIVES[1]} (the zips themselves, not extracted), but {name} is missing "
                f"(found: {present}).\n" + missing_archives_message(folder, base_url)
            )
        elif not download_missing:
            raise FileNotFoundError(
                f"{path} is missing.\n" + missing_archives_message(None, base_url)
            )
        else:
            try:
                download(
                    f"{base_url}/{name}",
                    path,
                    checksums[name],
                    progress=progress,
                    retries=retries,
                    backoff=backoff,
                )
            except (TransferError, urllib.error.HTTPError) as e:
                raise FileNotFoundError(
                    f"could not download {name} ({e}).\n"
                    + missing_archives_message(folder, base_url)
                ) from e
        found[name] = path
    return found


# ----------------------------------------------------------------------------- reading archives


def _to_28x28(png: bytes, resize: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        if resize == "lanczos":
            small = im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS)
        else:  # "maml-code": Pillow resizes mode "1" with nearest neighbour whatever the filter
            small = im.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS).convert("L")
    return 255 - np.asarray(small, dtype=np.uint8)  # ink 255, background 0


def read_archive(path: str | os.PathLike, resize: str = "lanczos") -> tuple[np.ndarray, list[str]]:
    """Read one Omniglot zip: ``(uint8 [C, 20, 28, 28], ["<Alphabet>/characterNN", ...])``.

    The layout must be the official one, ``images_<set>/<Alphabet>/characterNN/XXXX_YY.png`` with
    20 drawings per character; anything else, an unsafe member name, or a corrupt zip raises
    ``ValueError``. Characters are sorted by alphabet then folder, drawings by drawer.
    """
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}.")
    path = Path(path)
    top = path.stem
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not a readable zip file (corrupt or truncated?): {e}") from e
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    with zf:
        for info in zf.infolist():
            check_member_name(info.filename)
            if info.is_dir() or not info.filename.lower().endswith(".png"):
                continue
            m = _MEMBER.match(info.filename)
            if m is None or m.group(1) != top:
                raise ValueError(
                    f"{path} has wrong layout: member {info.filename!r} is not "
                    f"{top}/<Alphabet>/characterNN/XXXX_YY.png."
                )
            groups.setdefault((m.group(2), m.group(3)), []).append((int(m.group(5)), info.filename))
        if not groups:
            raise ValueError(
                f"{path} has wrong layout: no {top}/<Alphabet>/characterNN/*.png inside."
            )
        keys = sorted(groups)
        images = np.empty((len(keys), DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for c, key in enumerate(keys):
            drawings = sorted(groups[key])
            if len(drawings) != DRAWINGS:
                raise ValueError(
                    f"{path} has wrong layout: {key[0]}/{key[1]} has {len(drawings)} drawings, "
                    f"every character needs {DRAWINGS}."
                )
            for d, (_, member) in enumerate(drawings):
                try:
                    images[c, d] = _to_28x28(zf.read(member), resize)
                except (zipfile.BadZipFile, EOFError, OSError, SyntaxError) as e:
                    raise ValueError(f"{path}: member {member} is corrupt: {e}") from e
    return images, [f"{a}/{ch}" for a, ch in keys]


# ----------------------------------------------------------------------------- the cache


def cache_path(cache_dir: str | os.PathLike | None = None, resize: str = "lanczos") -> Path:
    """Where the cache file for ``resize`` lives (default folder ``data_dir()/cache``)."""
    folder = Path(cache_dir) if cache_dir is not None else data_dir() / "cache"
    return folder / f"omniglot{IMAGE_SIZE}_{resize}_v{CACHE_VERSION}.pt"


def _digest(images: Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def build_cache(
    archives: Mapping[str, Path], path: str | os.PathLike, resize: str = "lanczos"
) -> Omniglot:
    """Convert the two archives into the cache file at ``path`` (written atomically)."""
    parts = [read_archive(archives[name], resize) for name in ARCHIVES]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    characters = [c for p in parts for c in p[1]]
    background = torch.tensor([True] * len(parts[0][1]) + [False] * len(parts[1][1]))
    if len(set(characters)) != len(characters):
        raise ValueError("the two archives share alphabet/character names: wrong archives?")
    payload = {
        "format": "metalearn_edu.omniglot",
        "version": CACHE_VERSION,
        "resize": resize,
        "images": images,
        "characters": characters,
        "background": background,
        "sha256": _digest(images),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return Omniglot(images, tuple(characters), background)


def read_cache(path: str | os.PathLike, resize: str = "lanczos") -> Omniglot:
    """Load a cache file; ``ValueError`` saying why if it is corrupt or of another format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or garbage files raise many different errors
        raise ValueError(f"cache {path} cannot be read (corrupt or truncated): {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != "metalearn_edu.omniglot":
        raise ValueError(f"cache {path} is not an Omniglot cache.")
    if payload.get("version") != CACHE_VERSION or payload.get("resize") != resize:
        raise ValueError(
            f"cache {path} has version {payload.get('version')} / resize "
            f"{payload.get('resize')!r}, expected version {CACHE_VERSION} / resize {resize!r}."
        )
    images = payload["images"]
    if _digest(images) != payload.get("sha256"):
        raise ValueError(f"cache {path} is corrupt: its images do not match their recorded sha256.")
    return Omniglot(images, tuple(payload["characters"]), payload["background"])


def load_omniglot(
    root: str | os.PathLike | None = None,
    *,
    resize: str = "lanczos",
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    download_missing: bool = True,
    base_url: str = OMNIGLOT_URL,
    checksums: Mapping[str, Sequence[Checksum]] = CHECKSUMS,
    progress: bool = True,
) -> Omniglot:
    """All 1623 Omniglot characters, from the cache, building it first if needed.

    A valid cache is used without looking at the archives. A corrupt or outdated cache is rebuilt
    with a warning saying why. See :func:`locate_archives` for where the archives come from.
    """
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}.")
    path = cache_path(cache_dir, resize)
    if path.is_file() and not rebuild:
        try:
            return read_cache(path, resize)
        except ValueError as e:
            warnings.warn(f"{e} Rebuilding it from the archives.", stacklevel=2)
    archives = locate_archives(
        root,
        download_missing=download_missing,
        base_url=base_url,
        checksums=checksums,
        progress=progress,
    )
    start = time.perf_counter()
    data = build_cache(archives, path, resize)
    if progress:
        print(f"Omniglot cache written to {path} in {time.perf_counter() - start:.1f} s.")
    return data
