"""Ingesting TLC months into the bucket, against the real S3 and Prefect servers and a local
HTTPS server standing in for the TLC site (its certificate from a test CA: tests/tls.py)."""

from __future__ import annotations

import contextlib
import http.server
import json
import secrets
import shutil
import ssl
import threading
import time
from collections.abc import Iterator

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from flows.reports.markdown import text
from taxi import DataError, sources
from taxi.errors import DownloadError
from taxi.ingest import ingest_month, months_present
from taxi.layout import data_key, data_manifest_key
from taxi.sources import public_url
from taxi.storage.errors import IntegrityError
from taxi.storage.objects import ObjectStore, sha256_hex
from tests.integration import prefect_api as api
from tests.paths import DATA, YELLOW_JAN

SHIPPED_ROWS = {"2021-01": 76_518, "2021-02": 64_572, "2021-03": 83_827}
PREFIX = "/trip-data/"


class TlcHandler(http.server.BaseHTTPRequestHandler):
    """Serves the repo's shipped files under the TLC's path layout (/trip-data/<file name>),
    404 for any other file; `server.behaviour` makes a file answer otherwise."""

    server: TlcStandIn

    def do_GET(self) -> None:
        name = self.path.removeprefix(PREFIX)
        self.server.requests.append(name)
        behaviour = self.server.behaviour.get(name)
        path = DATA / name
        if behaviour == "forbidden":
            return self.send_error(403)
        if not self.path.startswith(PREFIX) or not path.is_file():
            return self.send_error(404)
        body = path.read_bytes()
        if behaviour == "truncated":  # a short file, honestly announced as short
            body = body[: len(body) // 2]
        if (
            behaviour == "unannounced"
        ):  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "cut":  # the connection drops halfway through
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if behaviour == "stall":  # a little, then nothing at all
            self.wfile.write(body[:65536])
            self.wfile.flush()
            self.server.stopping.wait(60)
            return
        if behaviour == "trickle":  # a kilobyte every 0.2 s: alive, but far too slow
            for offset in range(0, len(body), 1024):
                if self.server.stopping.wait(0.2):
                    return
                self.wfile.write(body[offset : offset + 1024])
                self.wfile.flush()
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class TlcStandIn(http.server.ThreadingHTTPServer):
    """Over TLS when given a server context, else plain HTTP."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), TlcHandler)
        if tls is not None:
            # The handshake happens in the request's thread, on its first read.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.requests: list[str] = []
        self.behaviour: dict[str, str] = {}
        self.stopping = threading.Event()
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.server_address[1]}{PREFIX.rstrip('/')}"


@contextlib.contextmanager
def _serving(server: TlcStandIn) -> Iterator[TlcStandIn]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def tlc(monkeypatch, trusted_ca):
    """The stand-in over HTTPS (a mirror must be https://), and TAXI_TLC_BASE_URL naming it."""
    with _serving(TlcStandIn(trusted_ca.server_context())) as server:
        monkeypatch.setenv("TAXI_TLC_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def plain_tlc():
    """The stand-in over plain HTTP: what a run may be pointed at by hand, never a mirror."""
    with _serving(TlcStandIn()) as server:
        yield server


def _run(color: str = "green", start: str | None = None, end: str | None = None):
    from flows.ingest import ingest_flow

    state = ingest_flow(color, start, end, return_state=True)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, Exception) and hasattr(summary, "summary"):
        summary = summary.summary  # IngestError carries the summary
    return state, summary


def _months(entries) -> list[str]:
    return [e["month"] for e in entries]


def _file(month: str) -> str:
    return f"green_tripdata_{month}.parquet"


def _data_keys(store) -> list[str]:
    return sorted(store.list_keys("data/"))


def test_months_are_copied_with_manifests_and_a_rerun_downloads_nothing(
    prefect_api, bucket_env, tlc
):
    store = bucket_env
    tlc.behaviour[_file("2021-04")] = "forbidden"  # CloudFront's answer for a month not out yet

    state, summary = _run("green", "2021-01", "2021-05")
    assert state.is_completed()
    assert _months(summary["ingested"]) == ["2021-01", "2021-02", "2021-03"]
    assert _months(summary["not_available"]) == ["2021-04", "2021-05"]
    assert "HTTP 403" in summary["not_available"][0]["reason"]
    assert "not requested: 2021-04 is not published yet" == summary["not_available"][1]["reason"]
    assert summary["skipped"] == summary["failed"] == summary["not_attempted"] == []
    # 2021-05 is not asked for: the TLC publishes in order, and skipping past an unpublished
    # month would leave a gap that "the months after the newest" never fills.
    assert tlc.requests == [_file(m) for m in ("2021-01", "2021-02", "2021-03", "2021-04")]

    for month, rows in SHIPPED_ROWS.items():
        key = f"data/green/green_tripdata_{month}.parquet"
        body = (DATA / _file(month)).read_bytes()
        assert store.get(key) == body
        manifest = json.loads(store.get(key + ".manifest.json"))
        assert manifest == {
            **manifest,
            "color": "green",
            "month": month,
            "key": key,
            "source": f"{tlc.base_url}/{_file(month)}",
            "bytes": len(body),
            "sha256": sha256_hex(body),
            "rows": rows,
            "schema": "green",
        }
        assert manifest["ingested_at"]
    assert months_present(store, "green") == [(2021, 1), (2021, 2), (2021, 3)]
    assert months_present(store, "yellow") == []
    report = api.artifacts(state.state_details.flow_run_id, "taxi-ingest-report")
    assert len(report) == 1
    text = report[0].data
    assert "3 ingested, 0 skipped, 2 not available yet, 0 failed" in text
    assert (
        "| 2021-02 | ingested | 64,572 trips" in text and "| 2021-04 | not available yet |" in text
    )

    # The same months again: nothing is downloaded or written.
    before = {item["Key"]: item["ETag"] for item in store.list_objects("")}
    tlc.requests.clear()
    state, summary = _run("green", "2021-01", "2021-03")
    assert state.is_completed()
    assert (
        _months(summary["skipped"]) == ["2021-01", "2021-02", "2021-03"]
        and summary["ingested"] == []
    )
    assert tlc.requests == []
    assert {item["Key"]: item["ETag"] for item in store.list_objects("")} == before

    # No months given: the months after the newest one in the bucket, up to now. April is
    # still not published, so that is the only request.
    state, summary = _run("green")
    assert state.is_completed()
    assert summary["ingested"] == [] and _months(summary["not_available"])[0] == "2021-04"
    assert tlc.requests == [_file("2021-04")]
    assert {item["Key"]: item["ETag"] for item in store.list_objects("")} == before


def test_a_truncated_file_is_refused_and_nothing_of_it_lands(prefect_api, bucket_env, tlc):
    store = bucket_env
    tlc.behaviour[_file("2021-02")] = "truncated"

    state, summary = _run("green", "2021-01", "2021-03")
    assert state.is_failed()
    assert _months(summary["ingested"]) == ["2021-01"]
    assert _months(summary["failed"]) == ["2021-02"] and summary["not_attempted"] == ["2021-03"]
    assert (
        "DataError" in summary["failed"][0]["error"]
        and "not a readable parquet file" in summary["failed"][0]["error"]
    )
    # Bad input is not retried (the same bytes would fail the same way), and March, after
    # the gap, is not ingested: the next run starts again at February.
    assert tlc.requests.count(_file("2021-02")) == 1 and _file("2021-03") not in tlc.requests
    assert _data_keys(store) == [
        "data/green/green_tripdata_2021-01.parquet",
        "data/green/green_tripdata_2021-01.parquet.manifest.json",
    ]
    assert "green 2021-02 could not be ingested" in str(
        state.message
    ) or "green 2021-02 could not be ingested" in repr(state.result(raise_on_failure=False))
    text = api.artifacts(state.state_details.flow_run_id, "taxi-ingest-report")[0].data
    assert "| 2021-02 | **failed** |" in text and "| 2021-03 | not attempted |" in text

    # Fixed at the source: the next run without months picks up where it stopped.
    tlc.behaviour.clear()
    state, summary = _run("green", end="2021-03")
    assert state.is_completed() and _months(summary["ingested"]) == ["2021-02", "2021-03"]
    assert months_present(store, "green") == [(2021, 1), (2021, 2), (2021, 3)]


@pytest.mark.parametrize(
    ("behaviour", "deadline", "read_timeout", "expected"),
    [
        ("cut", 60, 30, "connection closed after|download interrupted"),
        ("stall", 60, 1, r"download interrupted \(.*timed out\)"),
        ("stall", 2, 30, "not downloaded within the deadline of 2 s"),
        ("trickle", 2, 30, "not downloaded within the deadline of 2 s"),
    ],
)
def test_a_broken_transfer_leaves_nothing_under_data(
    bucket_env, tlc, monkeypatch, behaviour, deadline, read_timeout, expected
):
    store = bucket_env
    tlc.behaviour[_file("2021-01")] = behaviour
    monkeypatch.setattr(sources, "READ_TIMEOUT_SECONDS", read_timeout)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=expected):
        ingest_month(store, "green", (2021, 1), tlc.base_url, deadline_seconds=deadline)
    # The stand-in would keep the connection open for a minute (stall) or 7 s (trickle).
    assert time.monotonic() - started < min(deadline, read_timeout) + 3
    assert _data_keys(store) == []


def test_size_cap_and_input_contract_are_checked_before_anything_is_stored(
    bucket_env, tlc, tmp_path
):
    store = bucket_env
    with pytest.raises(DataError, match="is 1,333,519 bytes, more than the 1,000,000-byte limit"):
        ingest_month(store, "green", (2021, 1), tlc.base_url, max_bytes=1_000_000)
    # No size announced beforehand (a local file here): counted as it streams in.
    with pytest.raises(DataError, match="is more than the 1,000,000-byte limit"):
        ingest_month(store, "green", (2021, 1), str(DATA), max_bytes=1_000_000)
    # A yellow file under a green name (a mirror mix-up) is not a green month.
    pq.write_table(pacsv.read_csv(YELLOW_JAN), tmp_path / _file("2021-01"))
    with pytest.raises(DataError, match="is a yellow trip file, expected green"):
        ingest_month(store, "green", (2021, 1), str(tmp_path))
    assert _data_keys(store) == []


def test_a_local_directory_source_and_a_file_without_its_manifest(
    prefect_api, s3_server, tmp_path, monkeypatch
):
    # A bucket that does not exist yet: the first ingestion creates it.
    store = ObjectStore(bucket=f"fresh-{secrets.token_hex(4)}")
    monkeypatch.setenv("TAXI_BUCKET", store.bucket)
    for month in ("2021-01", "2021-02"):
        shutil.copy(DATA / _file(month), tmp_path / _file(month))
    monkeypatch.setenv("TAXI_TLC_BASE_URL", str(tmp_path))

    # Nothing of this colour in the bucket yet: the run cannot guess where to start.
    state, _ = _run("green")
    assert state.is_failed()
    assert "no green month is in the bucket yet" in str(state.result(raise_on_failure=False))
    assert "give start (YYYY-MM)" in str(state.result(raise_on_failure=False))
    assert store.list_keys("") == []  # the bucket exists now, and nothing was written

    # A file left without its manifest (an ingestion that died midway) does not count...
    store.put(data_key("green", (2021, 1)), b"half an upload")
    assert months_present(store, "green") == []
    # ...and is replaced. A file missing from the directory is a month not published yet.
    state, summary = _run("green", "2021-01", "2021-03")
    assert state.is_completed()
    assert _months(summary["ingested"]) == ["2021-01", "2021-02"] and _months(
        summary["not_available"]
    ) == ["2021-03"]
    assert "no such file" in summary["not_available"][0]["reason"]
    assert store.get(data_key("green", (2021, 1))) == (DATA / _file("2021-01")).read_bytes()
    assert json.loads(store.get(data_manifest_key("green", (2021, 1))))["source"] == str(
        tmp_path / _file("2021-01")
    )


def test_a_month_after_the_current_one_does_not_stop_ingestion(
    prefect_api, bucket_env, tmp_path, monkeypatch
):
    store = bucket_env
    for month in ("2021-01", "2021-02"):
        shutil.copy(DATA / _file(month), tmp_path / _file(month))
    monkeypatch.setenv("TAXI_TLC_BASE_URL", str(tmp_path))
    ingest_month(store, "green", (2021, 1), str(tmp_path))
    # A complete-looking month that cannot exist yet, as anyone who can write the bucket could
    # put there: taken for the newest month, it would leave nothing to continue with.
    future = "data/green/green_tripdata_2999-12.parquet"
    store.put(future, store.get(data_key("green", (2021, 1))))
    store.put(f"{future}.manifest.json", store.get(data_manifest_key("green", (2021, 1))))
    assert months_present(store, "green") == [(2021, 1)]

    state, summary = _run("green")
    assert state.is_completed()
    assert _months(summary["ingested"]) == ["2021-02"]
    assert _months(summary["not_available"])[0] == "2021-03"
    reason = "after the current month, no TLC file"
    assert summary["ignored"] == [
        {"month": "2999-12", "reason": f"{future}: {reason}"},
        {"month": "2999-12", "reason": f"{future}.manifest.json: {reason}"},
    ]
    run_id = state.state_details.flow_run_id
    logs = api.logs(run_id)
    assert any(f"Ignoring {future}: its month is after the current one" in line for line in logs)
    report = api.artifacts(run_id, "taxi-ingest-report")[0].data
    # (the key as markdown text: its underscores escaped, shown as written)
    assert f"| 2999-12 | **ignored** | {text(future)}: {reason} |" in report
    # Ignored, not deleted: what to do with it is the bucket owner's call.
    assert store.exists(future) and months_present(store, "green") == [(2021, 1), (2021, 2)]


@pytest.mark.parametrize(
    ("color", "start", "end", "expected"),
    [
        ("purple<script>", None, None, "color must be one of yellow, green"),
        ("green", "../../etc/passwd", None, "start must be a month written YYYY-MM"),
        ("green", "2021-01", "2021-13", "end must be a month written YYYY-MM"),
        ("green", "1999-01", "2021-01", "start must not be before 2009-01"),
        ("green", "2021-03", "2021-01", "start must not be after end"),
        ("green", "2021-01", "2999-01", "end must not be after the current month"),
    ],
)
def test_bad_parameters_fail_the_run_clearly_without_repeating_them(
    prefect_api, bucket_env, tlc, color, start, end, expected
):
    state, _ = _run(color, start, end)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert expected in message
    assert "<script>" not in message and "passwd" not in message and "2021-13" not in message
    assert tlc.requests == [] and _data_keys(bucket_env) == []


def test_a_plain_http_mirror_is_refused_before_any_work(
    prefect_api, bucket_env, plain_tlc, monkeypatch
):
    refused = (
        "TAXI_TLC_BASE_URL must be an https:// URL with a host or a local directory "
        "(a mirror over plain http:// is refused)"
    )
    mirror = plain_tlc.base_url.replace("http://", "http://user:mirror-secret@")
    monkeypatch.setenv("TAXI_TLC_BASE_URL", mirror)
    state, _ = _run("green", "2021-01", "2021-01")
    assert state.is_failed()
    assert str(state.result(raise_on_failure=False)) == refused
    assert "mirror-secret" not in state.message and "127.0.0.1" not in state.message
    # A setting, not a passing fault: refused before the first task, so nothing is retried.
    run_id = state.state_details.flow_run_id
    assert api.task_runs(run_id, "list-data-months", until=lambda runs: True) == []
    assert api.task_runs(run_id, "ingest-month", until=lambda runs: True) == []
    # Copying one month directly refuses it too.
    with pytest.raises(ValueError) as raised:
        ingest_month(bucket_env, "green", (2021, 1), plain_tlc.base_url)
    assert str(raised.value) == refused
    assert plain_tlc.requests == [] and _data_keys(bucket_env) == []


def test_a_month_stored_wrong_is_removed_and_gets_no_manifest(bucket_env, monkeypatch):
    # A store that keeps other bytes than it was sent cannot be had on demand from a real
    # server: the read-back's hash stands in for it.
    store = bucket_env
    monkeypatch.setattr(ObjectStore, "stored_sha256", lambda self, key: "0" * 64)
    with pytest.raises(IntegrityError, match="read back with sha256 0000"):
        ingest_month(store, "green", (2021, 1), str(DATA))
    assert _data_keys(store) == []


def test_recorded_source_urls_carry_no_credentials():
    assert public_url(
        "https://user:secret@mirror.example:8443/trip-data/f.parquet?X-Sig=abc#x"
    ) == ("https://mirror.example:8443/trip-data/f.parquet")
    assert public_url("/srv/tlc/f.parquet") == "/srv/tlc/f.parquet"
