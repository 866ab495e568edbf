"""Omniglot archives: download against a real local HTTP server, verification, safe extraction,
reading, the cache, and the errors a user can run into. Uses small archives built here."""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from metalearn_edu.config import DATA_ENV, OMNIGLOT_ENV
from metalearn_edu.data import (
    Checksum,
    check_member_name,
    download,
    load_omniglot,
    locate_archives,
    safe_extract,
    verify_file,
)
from metalearn_edu.data.download import TransferError
from metalearn_edu.data.omniglot import (
    ARCHIVES,
    CACHE_VERSION,
    cache_path,
    read_archive,
    read_cache,
)

# ----------------------------------------------------------------------------- small archives


def _png(seed: int) -> bytes:
    """A 105x105 one-bit PNG like Omniglot's: white background, one black bar."""
    im = Image.new("1", (105, 105), 1)
    x0 = 5 + (seed * 7) % 60
    for x in range(x0, x0 + 30):
        for y in range(20 + seed % 40, 40 + seed % 40):
            im.putpixel((x, y), 0)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


PNG = [_png(i) for i in range(20)]  # a few distinct drawings, reused


def make_archive(
    name: str, alphabets: int, characters: int, drawings: int = 20, extra: dict | None = None
) -> bytes:
    """Zip bytes in the official layout: <name>/<Alphabet>/characterNN/XXXX_YY.png."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/", b"")
        for a in range(alphabets):
            for c in range(1, characters + 1):
                for d in range(1, drawings + 1):
                    member = f"{name}/{name[7:11]}_alphabet{a}/character{c:02d}/{c:04d}_{d:02d}.png"
                    zf.writestr(member, PNG[(a * 3 + c + d) % len(PNG)])
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buf.getvalue()


def checksum_of(data: bytes) -> Checksum:
    return Checksum(len(data), hashlib.sha256(data).hexdigest(), "test")


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    return {
        "images_background.zip": make_archive("images_background", alphabets=3, characters=2),
        "images_evaluation.zip": make_archive("images_evaluation", alphabets=2, characters=2),
    }


@pytest.fixture(scope="module")
def checksums(archives):
    return {name: (checksum_of(data),) for name, data in archives.items()}


# ----------------------------------------------------------------------------- local HTTP server


class Server:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``files``; the first
    ``break_next`` requests send the right Content-Length but only half the body, then hang up."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.break_next = 0
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                data = owner.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if owner.break_next > 0:
                    owner.break_next -= 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archives):
    with Server() as s:
        s.files.update(archives)
        yield s


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- download


def test_download_success_is_verified_and_atomic(server, archives, checksums, tmp_path):
    name = "images_background.zip"
    dest = download(f"{server.url}/{name}", tmp_path / name, checksums[name], progress=False)
    assert dest.read_bytes() == archives[name]
    assert leftovers(tmp_path) == []  # no temporary file left behind


def test_download_wrong_checksum_raises_and_leaves_nothing(server, archives, tmp_path):
    name = "images_background.zip"
    wrong = (Checksum(len(archives[name]), "0" * 64, "wrong"),)
    with pytest.raises(ValueError, match="sha256"):
        download(f"{server.url}/{name}", tmp_path / name, wrong, progress=False, backoff=0)
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # a complete transfer with a wrong checksum is not retried


def test_broken_transfer_is_retried_then_succeeds(server, archives, checksums, tmp_path):
    name = "images_evaluation.zip"
    server.break_next = 1
    dest = download(
        f"{server.url}/{name}", tmp_path / name, checksums[name], progress=False, backoff=0
    )
    assert dest.read_bytes() == archives[name]
    assert len(server.requests) == 2
    assert leftovers(tmp_path) == []


def test_retries_are_bounded(server, checksums, tmp_path):
    name = "images_evaluation.zip"
    server.break_next = 10
    with pytest.raises(TransferError, match="2 attempts"):
        download(
            f"{server.url}/{name}",
            tmp_path / name,
            checksums[name],
            retries=2,
            progress=False,
            backoff=0,
        )
    assert len(server.requests) == 2
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_an_error(server, checksums, tmp_path):
    with pytest.raises(urllib.error.HTTPError):
        download(
            f"{server.url}/nothing.zip", tmp_path / "x.zip", checksums[ARCHIVES[0]], progress=False
        )


def test_load_omniglot_downloads_into_data_dir_and_caches(
    server, archives, checksums, tmp_path, monkeypatch
):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    monkeypatch.delenv(OMNIGLOT_ENV, raising=False)
    server.break_next = 1  # the first transfer breaks off: retried
    data = load_omniglot(base_url=server.url, checksums=checksums, progress=False)
    assert data.images.shape == (6 + 4, 20, 28, 28)
    assert data.counts()["background"] == {"alphabets": 3, "characters": 6, "images": 120}
    assert data.counts()["evaluation"] == {"alphabets": 2, "characters": 4, "images": 80}
    for name in ARCHIVES:
        assert (tmp_path / "data" / "omniglot" / name).read_bytes() == archives[name]
    n_requests = len(server.requests)
    again = load_omniglot(base_url=server.url, checksums=checksums, progress=False)
    assert torch.equal(again.images, data.images)
    assert len(server.requests) == n_requests  # second time: from the cache, no download


def test_unreachable_server_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    monkeypatch.delenv(OMNIGLOT_ENV, raising=False)
    with Server() as s:
        url = s.url  # a port that is closed once the server is gone
    with pytest.raises(FileNotFoundError) as info:
        locate_archives(base_url=url, progress=False, retries=1)
    message = str(info.value)
    for name in ARCHIVES:
        assert f"{url}/{name}" in message
    assert str(tmp_path / "omniglot") in message and OMNIGLOT_ENV in message


# ----------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize(
    "member", ["../evil.png", "images_background/../../evil.png", "/tmp/evil.png"]
)
def test_unsafe_member_names_are_refused(member):
    with pytest.raises(ValueError, match="refusing"):
        check_member_name(member)


def test_safe_names_pass():
    assert check_member_name("images_background/a/../b/character01/x.png").parts[-1] == "x.png"


def test_path_traversal_archive_is_refused(server, tmp_path, monkeypatch):
    evil = make_archive("images_background", 1, 1, extra={"../../evil.txt": b"owned"})
    server.files["images_background.zip"] = evil
    dest = download(
        f"{server.url}/images_background.zip",
        tmp_path / "dl" / "images_background.zip",
        [checksum_of(evil)],
        progress=False,
    )
    with pytest.raises(ValueError, match="outside"):
        read_archive(dest)
    target = tmp_path / "dl" / "out" / "extracted"
    with pytest.raises(ValueError, match="outside"):
        safe_extract(dest, target)
    assert not target.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dl" / "evil.txt").exists()
    assert leftovers(tmp_path / "dl" / "out") == []


def test_safe_extract_unpacks_a_good_archive(archives, tmp_path):
    zip_path = tmp_path / "images_evaluation.zip"
    zip_path.write_bytes(archives["images_evaluation.zip"])
    out = safe_extract(zip_path, tmp_path / "out")
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 2 * 2 * 20
    with pytest.raises(ValueError, match="already exists"):
        safe_extract(zip_path, out)


# ------------------------------------------------------------------- bad archives and folders


def write_folder(folder: Path, archives: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in archives.items():
        (folder / name).write_bytes(data)
    return folder


def test_root_folder_with_wrong_layout(tmp_path, checksums):
    (tmp_path / "images_background").mkdir()  # extracted, not zipped
    with pytest.raises(ValueError, match="wrong layout") as info:
        locate_archives(tmp_path, checksums=checksums)
    assert "images_evaluation.zip" in str(info.value) and OMNIGLOT_ENV in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        locate_archives(tmp_path / "nowhere")


def test_env_var_folder_is_used(tmp_path, archives, checksums, monkeypatch):
    folder = write_folder(tmp_path / "omni", archives)
    monkeypatch.setenv(OMNIGLOT_ENV, str(folder))
    found = locate_archives(checksums=checksums)
    assert found == {name: folder / name for name in ARCHIVES}
    monkeypatch.setenv(OMNIGLOT_ENV, str(tmp_path))  # a folder without the zips
    with pytest.raises(ValueError, match=f"{OMNIGLOT_ENV}=.* has the wrong layout"):
        locate_archives(checksums=checksums)


def test_wrong_checksum_with_the_default_values(tmp_path, archives):
    folder = write_folder(tmp_path, archives)
    with pytest.raises(ValueError, match="matches none of the accepted"):
        locate_archives(folder)  # the real checksums: these small archives are not Omniglot
    with pytest.raises(ValueError, match="8,910,008"):
        verify_file(folder / ARCHIVES[0], [Checksum(8_910_008, "a" * 64)])


def test_truncated_and_corrupt_archives(tmp_path, archives):
    data = archives["images_background.zip"]
    truncated = tmp_path / "images_background.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_archive(truncated)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        safe_extract(truncated, tmp_path / "out")
    # a flipped byte inside a member's compressed data: the zip opens, the member is bad
    corrupt = bytearray(data)
    offset = data.index(b"IDAT") + 8
    corrupt[offset] ^= 0xFF
    truncated.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="corrupt"):
        read_archive(truncated)


@pytest.mark.parametrize(
    "archive, word",
    [
        (make_archive("images_background", 1, 2, drawings=19), "19 drawings"),
        (make_archive("images_evaluation", 1, 1), "is not images_background/"),
        (make_archive("images_background", 0, 0, extra={"images_background/x.png": b""}), "is not"),
        (make_archive("images_background", 0, 0), "no images_background"),
    ],
)
def test_archive_with_wrong_layout(tmp_path, archive, word):
    path = tmp_path / "images_background.zip"
    path.write_bytes(archive)
    with pytest.raises(ValueError, match="wrong layout") as info:
        read_archive(path)
    assert word in str(info.value)


def test_read_archive_preprocessing(tmp_path, archives):
    path = tmp_path / "images_background.zip"
    path.write_bytes(archives["images_background.zip"])
    images, names = read_archive(path)
    assert images.shape == (6, 20, 28, 28) and images.dtype.name == "uint8"
    assert names[:2] == ["back_alphabet0/character01", "back_alphabet0/character02"]
    # ink is 255, background 0; LANCZOS gives grey levels at the stroke edges
    assert images[:, :, 0, 0].max() == 0 and images.max() == 255
    assert len(set(images.ravel().tolist())) > 2
    binary, _ = read_archive(path, resize="maml-code")  # Pillow: nearest neighbour for mode "1"
    assert set(binary.ravel().tolist()) == {0, 255}
    with pytest.raises(ValueError, match="resize"):
        read_archive(path, resize="bicubic")


# ----------------------------------------------------------------------------- the cache


def test_cache_is_rebuilt_when_corrupt_or_outdated(tmp_path, archives, checksums):
    folder = write_folder(tmp_path / "omni", archives)
    cache_dir = tmp_path / "cache"
    data = load_omniglot(folder, cache_dir=cache_dir, checksums=checksums, progress=False)
    path = cache_path(cache_dir)
    assert path.name == f"omniglot28_lanczos_v{CACHE_VERSION}.pt"
    assert leftovers(cache_dir) == []
    assert torch.equal(read_cache(path).images, data.images)

    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="corrupt"):
        read_cache(path)
    with pytest.warns(UserWarning, match="Rebuilding"):
        rebuilt = load_omniglot(folder, cache_dir=cache_dir, checksums=checksums, progress=False)
    assert torch.equal(rebuilt.images, data.images)

    payload = torch.load(path, weights_only=True)
    payload["images"][0, 0, 0, 0] += 1  # silent bit rot: caught by the recorded sha256
    torch.save(payload, path)
    with pytest.raises(ValueError, match="sha256"):
        read_cache(path)
    payload["version"] = CACHE_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(ValueError, match="version"):
        read_cache(path)
    with pytest.warns(UserWarning, match="Rebuilding"):
        load_omniglot(folder, cache_dir=cache_dir, checksums=checksums, progress=False)
    assert read_cache(path).characters == data.characters


def test_valid_cache_needs_no_archives(tmp_path, archives, checksums):
    folder = write_folder(tmp_path / "omni", archives)
    load_omniglot(folder, cache_dir=tmp_path / "cache", checksums=checksums, progress=False)
    data = load_omniglot(tmp_path / "gone", cache_dir=tmp_path / "cache", progress=False)
    assert len(data.characters) == 10
