"""Where an input may come from and how it is opened (taxi.sources): which sources a
deployment's run may read (check_source, a pure function), the settings behind it and behind
the download bounds, reading over HTTP and its redirects (a local HTTP server)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial

import pytest

from taxi import DataError, load_data
from taxi.settings import DEFAULT_DOWNLOAD_DEADLINE_SECONDS, DEFAULT_DOWNLOAD_MAX_BYTES, Settings
from taxi.sources import _NoDowngradeRedirects, check_source, open_source
from tests.paths import GREEN_MAR

BUCKETS = ("taxi", "landing")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "/etc/passwd",
            "local paths are not read by deployment runs unless TAXI_ALLOW_LOCAL_SOURCES=true",
        ),
        ("/proc/self/environ", "local paths are not read by deployment runs"),
        ("data/green_tripdata_2021-01.parquet", "local paths are not read by deployment runs"),
        (
            "http://169.254.169.254/latest/meta-data/",
            r"only s3:// URIs in the project's bucket\(s\) and https:// URLs",
        ),
        ("http://10.0.0.5:9000/taxi/x.parquet", "only s3:// URIs"),
        ("file:///etc/passwd", "only s3:// URIs"),
        ("ftp://example.com/x.parquet", "only s3:// URIs"),
        ("HTTP://example.com/x.parquet", "only s3:// URIs"),
        (
            "s3://other-bucket/data/x.parquet",
            r"not in a bucket runs may read \('taxi', 'landing'; TAXI_SOURCE_BUCKETS",
        ),
        ("s3://taxi", "not in a bucket runs may read"),
        ("https:///x.parquet", "an https:// URL needs a host"),
    ],
)
def test_a_deployment_run_refuses_sources_outside_its_buckets_and_https(source, problem):
    with pytest.raises(DataError, match=problem) as raised:
        check_source(source, BUCKETS, allow_local=False)
    assert str(raised.value).split(": ")[0] in source.lower()  # names the source


def test_a_deployment_run_reads_its_buckets_https_and_local_paths_only_when_allowed():
    for source in (
        "s3://taxi/incoming/x.csv",
        "s3://landing/2021/x.parquet",
        "https://d37ci6vzurychx.cloudfront.net/x.parquet",
    ):
        check_source(source, BUCKETS, allow_local=False)
    check_source("/srv/data/x.parquet", BUCKETS, allow_local=True)
    # Allowing local paths opens no other scheme and no other bucket.
    for source in ("http://127.0.0.1/x", "s3://other/x", "file:///srv/data/x.parquet"):
        with pytest.raises(DataError):
            check_source(source, BUCKETS, allow_local=True)


def test_a_refused_url_is_named_without_its_credentials():
    with pytest.raises(DataError) as raised:
        check_source(
            "http://user:hunter2@10.0.0.5/x.parquet?X-Amz-Signature=abc", BUCKETS, allow_local=False
        )
    assert "hunter2" not in str(raised.value) and "abc" not in str(raised.value)
    assert str(raised.value).startswith("http://10.0.0.5/x.parquet: ")


def test_source_and_download_settings(monkeypatch):
    for name in (
        "TAXI_DOWNLOAD_MAX_BYTES",
        "TAXI_DOWNLOAD_DEADLINE_SECONDS",
        "TAXI_ALLOW_LOCAL_SOURCES",
        "TAXI_SOURCE_BUCKETS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAXI_BUCKET", "taxi")
    settings = Settings.from_env()
    assert (settings.download_max_bytes, settings.download_deadline_seconds) == (
        512 * 1024 * 1024,
        15 * 60,
    )
    assert (DEFAULT_DOWNLOAD_MAX_BYTES, DEFAULT_DOWNLOAD_DEADLINE_SECONDS) == (
        512 * 1024 * 1024,
        900,
    )
    assert settings.allow_local_sources is False and settings.readable_buckets == ("taxi",)
    monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", "1000")
    monkeypatch.setenv("TAXI_DOWNLOAD_DEADLINE_SECONDS", "5")
    monkeypatch.setenv("TAXI_ALLOW_LOCAL_SOURCES", "true")
    monkeypatch.setenv("TAXI_SOURCE_BUCKETS", "landing, archive")
    settings = Settings.from_env()
    assert (settings.download_max_bytes, settings.download_deadline_seconds) == (1000, 5)
    assert settings.allow_local_sources is True and settings.readable_buckets == (
        "taxi",
        "landing",
        "archive",
    )
    for name, bad, expected in (
        (
            "TAXI_DOWNLOAD_MAX_BYTES",
            "1GB",
            "TAXI_DOWNLOAD_MAX_BYTES must be a whole number of bytes, at least 1",
        ),
        (
            "TAXI_DOWNLOAD_DEADLINE_SECONDS",
            "0",
            "TAXI_DOWNLOAD_DEADLINE_SECONDS must be a whole number of seconds",
        ),
        ("TAXI_ALLOW_LOCAL_SOURCES", "maybe", "TAXI_ALLOW_LOCAL_SOURCES must be true or false"),
    ):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=expected):
            Settings.from_env()
        monkeypatch.delenv(name)


def test_load_over_https_scheme_handler(tmp_path):
    """load_data downloads over HTTP(S); served here by a local HTTP server."""
    shutil.copy(GREEN_MAR, tmp_path / "green_tripdata_2021-03.parquet")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        trips = load_data(f"{base}/green_tripdata_2021-03.parquet")
        assert len(trips) == 83_827
        with pytest.raises(DataError, match="HTTP 404"):
            load_data(f"{base}/green_tripdata_2099-01.parquet")
    finally:
        server.shutdown()


class _Redirects(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; /to/<url> answers 302 to <url>."""

    def do_GET(self) -> None:
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to/"))
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirecting(tmp_path) -> Iterator[str]:
    shutil.copy(GREEN_MAR, tmp_path / GREEN_MAR.name)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Redirects(*a, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_open_source_gives_a_local_path_as_is_and_a_remote_copy_while_open(redirecting, tmp_path):
    with open_source(str(GREEN_MAR)) as path:
        assert path == str(GREEN_MAR)
    for missing, problem in ((tmp_path / "nope", "file not found"), (tmp_path, "not a file")):
        with pytest.raises(DataError, match=f"^{re.escape(str(missing))}: {problem}$"):
            with open_source(str(missing)):
                pass
    with open_source(f"{redirecting}/{GREEN_MAR.name}") as path:
        with open(path, "rb") as copy:
            assert copy.read() == GREEN_MAR.read_bytes()
    assert not os.path.exists(path)


def test_redirects_to_other_schemes_are_refused_and_http_ones_followed(redirecting, tmp_path):
    # Followed: http to http (and http to https would be too).
    assert len(load_data(f"{redirecting}/to/{redirecting}/{GREEN_MAR.name}")) == 83_827
    secret = tmp_path / "secret.csv"
    secret.write_text("SECRET-token-1234\n")
    for target in (f"file://{secret}", "ftp://127.0.0.1/x.parquet", "data:,hello"):
        with pytest.raises(
            DataError, match=r"redirect refused \(HTTP 302\): only to http\(s\)://"
        ) as raised:
            load_data(f"{redirecting}/to/{target}")
        assert "SECRET" not in str(raised.value) and raised.value.__cause__ is None


def test_a_redirect_from_https_to_http_is_refused():
    # No TLS server here: the redirect handler is asked directly, as urllib asks it.
    handler = _NoDowngradeRedirects()
    with pytest.raises(urllib.error.HTTPError, match="redirect refused"):
        handler.redirect_request(
            urllib.request.Request("https://mirror.example/x.parquet"),
            None,
            302,
            "Found",
            {},
            "http://mirror.example/x.parquet",
        )
    followed = handler.redirect_request(
        urllib.request.Request("http://mirror.example/x.parquet"),
        None,
        301,
        "Moved",
        {},
        "https://mirror.example/x.parquet",
    )
    assert followed.full_url == "https://mirror.example/x.parquet"
