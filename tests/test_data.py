"""The pooch-managed ISSM data cache: hashes, cache reuse, read-only caches, offline errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading

import pytest

from issm_emulator import data
from issm_emulator.errors import DataUnavailableError

SMALL = ["exp/Square.exp", "exp/SquareFront.exp", "archives/Archive201.arch"]


def test_registry_matches_shared_files(shared_data_dir):
    reg = data.registry()
    assert len(reg) == 31 and "Pig.arch" in reg and "archives/Archive2425.arch" in reg
    for name, (digest, repo_path) in reg.items():
        f = shared_data_dir / name
        assert digest == "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest(), name
        assert repo_path.startswith(("test/Data/", "test/Exp/", "test/Archives/"))
    assert data.available() == sorted(reg)


def test_fetch_from_readonly_complete_cache(issm_data_dir):
    before = sorted(p.name for p in issm_data_dir.rglob("*"))
    p = data.fetch("Pig.arch")
    assert p == issm_data_dir / "Pig.arch"
    assert data.fetch_archive(101) == issm_data_dir / "archives" / "Archive101.arch"
    assert data.fetch_exp("SquareShelf") == issm_data_dir / "exp" / "SquareShelf.exp"
    assert data.fetch("Square.exp") == issm_data_dir / "exp" / "Square.exp"  # bare outline name
    assert sorted(p.name for p in issm_data_dir.rglob("*")) == before  # nothing written


def test_default_cache_dir(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.cache_dir().parts[-2:] == ("issm-emulator", "issm-data")


def test_unknown_name_lists_available(issm_data_dir):
    with pytest.raises(KeyError, match="available: .*Pig.arch"):
        data.fetch("Nope.arch")


@pytest.fixture()
def http_mirror(shared_data_dir, tmp_path):
    """A local HTTP server holding a copy of a few files at their repository paths."""
    root = tmp_path / "mirror"
    reg = data.registry()
    for name in SMALL:
        dest = root / reg[name][1]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data_dir / name, dest)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/", server
    server.shutdown()
    server.server_close()


def _closed_port_url():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def test_download_verify_and_reuse(http_mirror, tmp_path, monkeypatch, shared_data_dir):
    _, url, _ = http_mirror
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.ENV_VAR, str(cache))
    monkeypatch.setattr(data, "BASE_URL", url)
    old_umask = os.umask(0o022)
    try:
        p = data.fetch("exp/Square.exp")
    finally:
        os.umask(old_umask)
    assert p == cache / "exp" / "Square.exp"
    assert (p.stat().st_mode & 0o777) == 0o644  # the user's normal mode, not the 0600 of a temporary file
    assert p.read_bytes() == (shared_data_dir / "exp" / "Square.exp").read_bytes()
    a = data.fetch_archive(201)
    assert a.is_file()
    # offline afterwards: the cache is reused without any network access
    monkeypatch.setattr(data, "BASE_URL", _closed_port_url())
    assert data.fetch("exp/Square.exp") == p
    assert data.fetch_archive(201) == a


def test_corrupted_cached_file_refused(http_mirror, tmp_path, monkeypatch):
    _, url, _ = http_mirror
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.ENV_VAR, str(cache))
    monkeypatch.setattr(data, "BASE_URL", url)
    p = data.fetch("exp/SquareFront.exp")
    p.write_text(p.read_text() + "tampered\n")
    with pytest.raises(DataUnavailableError, match="corrupted.*Delete it and call"):
        data.fetch("exp/SquareFront.exp")
    os.remove(p)
    assert data.fetch("exp/SquareFront.exp").is_file()  # fetched again


def test_bad_download_rejected(http_mirror, tmp_path, monkeypatch):
    root, url, _ = http_mirror
    reg = data.registry()
    (root / reg["exp/Square.exp"][1]).write_text("not the outline\n")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "BASE_URL", url)
    with pytest.raises(DataUnavailableError):
        data.fetch("exp/Square.exp")
    assert not (tmp_path / "cache" / "exp" / "Square.exp").exists()


def test_offline_and_uncached(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(data, "BASE_URL", _closed_port_url())
    with pytest.raises(DataUnavailableError, match=data.ENV_VAR):
        data.fetch("exp/Square.exp")


def test_bundled_pine_island_files_work_offline(tmp_path, monkeypatch):
    """The Pine Island files ship in the package: offline and uncached, fetch returns the verified copy."""
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(data, "BASE_URL", _closed_port_url())
    for name in ("Pig.arch", "exp/Pig.exp", "exp/PigShelves.exp", "exp/PigIslands.exp"):
        p = data.fetch(name)
        assert p == data.bundled_path(name)
        assert data._sha256(p) == data.registry()[name][0].split(":", 1)[1]
    assert data.bundled_path("79North.arch") is None
    with pytest.raises(DataUnavailableError):
        data.fetch("79North.arch")  # not bundled: needs the network or a cache


def test_cached_file_is_preferred_to_bundled(issm_data_dir):
    assert data.fetch("Pig.arch") == issm_data_dir / "Pig.arch"
