"""Fetch, verify and safely unpack archives.

Three rules keep the data folder trustworthy:

1. A download goes to a temporary file in the destination folder and is renamed into place with
   ``os.replace`` only after its size and sha256 match an expected value, so a reader never sees a
   half-written archive.
2. A broken transfer (connection reset, fewer bytes than announced) is retried a bounded number of
   times; a complete transfer with the wrong checksum is an error at once.
3. Extraction refuses any member that would land outside the target folder (absolute paths, ``..``)
   and unpacks into a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

CHUNK = 1 << 16


class Checksum(NamedTuple):
    """An accepted (size, sha256) of a file; ``label`` says where the value comes from."""

    size: int
    sha256: str
    label: str = ""


def sha256sum(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(expected: Sequence[Checksum]) -> str:
    return "; ".join(
        f"{c.size:,} bytes, sha256 {c.sha256}" + (f" ({c.label})" if c.label else "")
        for c in expected
    )


def check_checksum(name: str, size: int, sha256: str, expected: Sequence[Checksum]) -> None:
    """Raise ``ValueError`` unless (size, sha256) equals one of the ``expected`` values."""
    if not expected:
        raise ValueError(f"no expected checksum given for {name}: refusing to trust it unchecked.")
    if any(size == c.size and sha256 == c.sha256 for c in expected):
        return
    raise ValueError(
        f"{name} has {size:,} bytes and sha256 {sha256}, which matches none of the accepted "
        f"values ({_describe(expected)}). The file is corrupt, truncated or a different file: "
        f"delete it and download it again."
    )


def verify_file(path: str | os.PathLike, expected: Sequence[Checksum]) -> None:
    """Check a file's size and sha256 against the accepted values (``ValueError`` if none match)."""
    path = Path(path)
    size = path.stat().st_size
    # Compare the size first: a truncated file is then reported without hashing it.
    if expected and not any(size == c.size for c in expected):
        check_checksum(str(path), size, "(not computed: the size is already wrong)", expected)
    check_checksum(str(path), size, sha256sum(path), expected)


class TransferError(OSError):
    """A transfer that broke off (retried by :func:`download`)."""


def _fetch_once(url: str, tmp: Path, progress: bool, timeout: float, desc: str) -> tuple[int, str]:
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced is not None else None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=desc, disable=not progress
            ) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
        raise TransferError(f"transfer of {url} broke off after {received:,} bytes: {e!r}") from e
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as e:
        raise TransferError(f"could not reach {url}: {e.reason}") from e
    if total is not None and received != total:
        raise TransferError(f"transfer of {url} broke off: got {received:,} of {total:,} bytes")
    return received, digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    expected: Sequence[Checksum],
    *,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, verified, atomically.

    The bytes go to a temporary file beside ``dest``; after a complete transfer whose size and
    sha256 match one of ``expected`` the file is renamed to ``dest`` (``os.replace``). A broken
    transfer is tried again, up to ``retries`` attempts in all, waiting ``backoff * attempt``
    seconds in between. A wrong checksum raises ``ValueError`` at once; running out of attempts
    raises ``TransferError`` (an ``OSError``).
    """
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            size, sha = _fetch_once(url, tmp, progress, timeout, desc=dest.name)
            check_checksum(f"{dest.name} downloaded from {url}", size, sha, expected)
            os.replace(tmp, dest)
            return dest
        except TransferError as e:
            last_error = e
            if attempt < retries:
                time.sleep(backoff * attempt)
        finally:
            tmp.unlink(missing_ok=True)
    raise TransferError(f"gave up on {url} after {retries} attempts; last error: {last_error}")


def check_member_name(name: str) -> PurePosixPath:
    """The member's relative path; ``ValueError`` if it is absolute or climbs out with ``..``.

    This is the check against the "zip slip" attack: a member named ``../../.bashrc`` or
    ``/etc/passwd`` must never be written where the archive says.
    """
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and ":" in posix.parts[0]):
        raise ValueError(f"archive member {name!r} has an absolute path: refusing to extract it.")
    depth = 0
    for part in posix.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise ValueError(
                f"archive member {name!r} would land outside the target folder: refusing to "
                "extract it."
            )
    return posix


def safe_member_path(name: str, target: str | os.PathLike) -> Path:
    """Where archive member ``name`` would be written under ``target``; ``ValueError`` if outside.

    Besides :func:`check_member_name`, the resolved path (symbolic links followed) must stay
    inside ``target``.
    """
    posix = check_member_name(name)
    root = Path(target).resolve()
    where = (root / Path(*posix.parts)).resolve() if posix.parts else root
    if where != root and root not in where.parents:
        raise ValueError(
            f"archive member {name!r} would land outside {root}: refusing to extract it."
        )
    return where


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Unpack a zip into ``target`` (which must not exist yet), refusing unsafe members.

    Every member is checked with :func:`safe_member_path` before anything is written; the files
    are unpacked into a temporary sibling folder that is renamed to ``target`` at the end, so an
    interrupted extraction leaves no half-filled ``target``.
    """
    target = Path(target)
    if target.exists():
        raise ValueError(f"target {target} already exists: remove it or choose another folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise ValueError(
            f"archive {archive} is not a valid zip file (corrupt or truncated): {e}"
        ) from e
    with zf:
        members = zf.infolist()
        for m in members:
            safe_member_path(m.filename, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for m in members:
                where = safe_member_path(m.filename, tmp)
                if m.is_dir():
                    where.mkdir(parents=True, exist_ok=True)
                    continue
                where.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(where, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            os.replace(tmp, target)
        except (zipfile.BadZipFile, EOFError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"archive {archive} is corrupt or truncated: {e}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
