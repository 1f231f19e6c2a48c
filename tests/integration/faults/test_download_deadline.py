"""The download deadline is total: a server that sends its TLS handshake, its header, its
redirects or its body a byte at a time, each byte well within the socket timeout, is cut off at
TAXI_DOWNLOAD_DEADLINE_SECONDS, and the connection is closed then. Against raw socket servers
on loopback (TLS with the test CA where the URL is https://), the real S3 server and, for the
retries, the real Prefect API."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from taxi import load_data
from taxi.errors import DeadlineError
from taxi.ingest import ingest_month
from tests.integration import prefect_api as api

DEADLINE = 3
# Seconds past the deadline within which the download must have failed and its connection
# closed: a generous bound for a busy machine, not a measurement.
MARGIN = 5
MONTH_FILE = "green_tripdata_2021-01.parquet"

# What a connection is sent: (pause before it, bytes) pieces.
Script = Callable[[int], Iterator[tuple[float, bytes]]]


def _header_a_byte_a_second(_: int) -> Iterator[tuple[float, bytes]]:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nPAR1":
        yield 1.0, bytes([byte])


def _body_a_byte_at_a_time(_: int) -> Iterator[tuple[float, bytes]]:
    yield 0.0, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    for _ in range(1000):
        yield 0.5, b"x"


def _redirect_after_a_while(hop: int) -> Iterator[tuple[float, bytes]]:
    # Each answer alone is quick enough; only their sum is too slow.
    yield (
        1.2,
        f"HTTP/1.1 302 Found\r\nLocation: /hop/{hop + 1}\r\nContent-Length: 0\r\n\r\n".encode(),
    )


def _handshake_a_byte_a_second(_: int) -> Iterator[tuple[float, bytes]]:
    yield 0.0, b"\x16\x03\x03\x40\x00"  # a TLS handshake record of 16 KiB is on its way
    for _ in range(60):
        yield 1.0, b"\x00"


class SlowServer:
    """A raw TCP server on loopback answering each connection with `script`, over TLS when
    given a context (`https` alone: the URL says https:// but the script speaks the TLS); it
    notes when the client closed each connection."""

    def __init__(self, script: Script, context: ssl.SSLContext | None, https: bool):
        self.script, self.context, self.https = script, context, https
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.closed_at: list[float] = []  # time.monotonic() when the client closed one
        self.lifetimes: list[float] = []  # accept to the client's close, per connection
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}{path}"

    def wait_for_closes(self, count: int, timeout: float) -> list[float]:
        until = time.monotonic() + timeout
        while len(self.closed_at) < count and time.monotonic() < until:
            time.sleep(0.05)
        return self.closed_at

    def stop(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # stopped
            opened = time.monotonic()
            with self._lock:
                index, self.accepted = self.accepted, self.accepted + 1
            threading.Thread(
                target=self._answer, args=(connection, index, opened), daemon=True
            ).start()

    def _answer(self, connection: socket.socket, index: int, opened: float) -> None:
        try:
            if self.context is not None:
                connection = self.context.wrap_socket(connection, server_side=True)
            self._read_request(connection)
            for pause, piece in self.script(index):
                if _closed_within(connection, pause):
                    return self._note_close(opened)
                connection.sendall(piece)
            if _closed_within(connection, 60):
                self._note_close(opened)
        except OSError:  # reset, broken pipe, TLS alert: the client went away
            self._note_close(opened)
        finally:
            connection.close()

    def _read_request(self, connection: socket.socket) -> None:
        if self.https and self.context is None:
            connection.recv(4096)  # the client's TLS ClientHello
            return
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                raise ConnectionResetError("closed before its request ended")
            received += chunk

    def _note_close(self, opened: float) -> None:
        closed = time.monotonic()
        with self._lock:
            self.closed_at.append(closed)
            self.lifetimes.append(closed - opened)


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the client closed `connection` within `seconds`; what else it sends (the rest
    of a ClientHello that came in several pieces) is read and dropped."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], left)
        if not readable:
            return False
        if connection.recv(4096) == b"":
            return True
    return False


@pytest.fixture
def slow_server(local_ca):
    """Starts SlowServers: slow_server(script, "tls" | "http" | "https-raw")."""
    servers: list[SlowServer] = []

    def start(script: Script, kind: str) -> SlowServer:
        context = local_ca.server_context() if kind == "tls" else None
        servers.append(SlowServer(script, context, https=kind != "http"))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    ("script", "kind", "connections"),
    [
        (_header_a_byte_a_second, "tls", (1, 1)),
        (_body_a_byte_at_a_time, "tls", (1, 1)),
        # Each hop answers well within the socket timeout: the deadline ends the chain, long
        # before urllib's own limit of ten redirects.
        (_redirect_after_a_while, "tls", (2, DEADLINE + 1)),
        (_handshake_a_byte_a_second, "https-raw", (1, 1)),
    ],
    ids=["header", "body", "redirects", "tls-handshake"],
)
def test_an_https_mirror_trickling_any_part_is_cut_off_at_the_deadline(
    bucket_env, slow_server, trusted_ca, script, kind, connections
):
    server = slow_server(script, kind)
    base = server.url("/trip-data")
    started = time.monotonic()
    with pytest.raises(DeadlineError) as raised:
        ingest_month(bucket_env, "green", (2021, 1), base, deadline_seconds=DEADLINE)
    assert time.monotonic() - started < DEADLINE + MARGIN
    # Names the file (its host and month) and the deadline.
    assert str(raised.value) == (
        f"{base}/{MONTH_FILE}: not downloaded within the deadline of {DEADLINE} s "
        "(TAXI_DOWNLOAD_DEADLINE_SECONDS: connecting, headers, redirects and body together)"
    )
    # Closed then, not merely given up on: the server saw each of its connections end.
    assert connections[0] <= server.accepted <= connections[1]
    closes = server.wait_for_closes(server.accepted, timeout=MARGIN)
    assert len(closes) == server.accepted
    assert max(closes) - started < DEADLINE + MARGIN
    assert bucket_env.list_keys("data/") == []


def test_a_plain_http_source_trickling_its_header_is_cut_off_without_showing_secrets(
    slow_server, monkeypatch
):
    server = slow_server(_header_a_byte_a_second, "http")
    monkeypatch.setenv("TAXI_DOWNLOAD_DEADLINE_SECONDS", str(DEADLINE))
    url = server.url(f"/trip-data/{MONTH_FILE}?X-Amz-Signature=signature-0123456789")
    started = time.monotonic()
    with pytest.raises(DeadlineError) as raised:
        load_data(url)
    assert time.monotonic() - started < DEADLINE + MARGIN
    message = str(raised.value)
    assert message.startswith(f"{server.url('/trip-data/' + MONTH_FILE)}: not downloaded within")
    assert "signature-0123456789" not in message
    assert server.wait_for_closes(1, timeout=MARGIN)


def test_a_deadline_hit_is_retried_and_each_attempt_is_bounded(
    prefect_api, bucket_env, slow_server, trusted_ca, monkeypatch
):
    from flows.ingest import ingest_flow

    server = slow_server(_header_a_byte_a_second, "tls")
    monkeypatch.setenv("TAXI_TLC_BASE_URL", server.url("/trip-data"))
    monkeypatch.setenv("TAXI_DOWNLOAD_DEADLINE_SECONDS", "2")
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "1")  # one retry, a second later
    state = ingest_flow("green", "2021-01", "2021-01", return_state=True)
    assert state.is_failed()
    summary = state.result(raise_on_failure=False).summary
    [failed] = summary["failed"]
    assert failed["month"] == "2021-01" and failed["error"].startswith(
        f"DeadlineError: {server.url('/trip-data/' + MONTH_FILE)}: not downloaded within the "
        "deadline of 2 s"
    )
    [task_run] = api.task_runs(
        state.state_details.flow_run_id,
        "ingest-month",
        until=lambda runs: any(r.state.is_failed() for r in runs),
    )
    assert task_run.run_count == 2 and server.accepted == 2
    # Each attempt's connection was cut off at its deadline (the flow's own work around them is
    # not what the deadline bounds).
    server.wait_for_closes(2, timeout=MARGIN)
    assert len(server.lifetimes) == 2 and max(server.lifetimes) < 2 + MARGIN, server.lifetimes
    assert bucket_env.list_keys("data/") == []
