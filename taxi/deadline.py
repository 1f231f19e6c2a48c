"""A total deadline on one HTTP(S) download: connecting, the TLS handshake, headers, redirects and
body together.

A socket timeout bounds each wait, not their sum: a server that sends a byte of its header every
few seconds never lets it expire. So each download gets a `Deadline`, a timer that, when the time
is up, shuts down every socket the download opened; a read or write blocked on one returns at
once, and the download fails with `DeadlineError`. It also fails so when it ends in any other way
after its time: a body cut short by the shutdown could pass for a whole file of unannounced
length. The connections of `Deadline.opener` (redirects' included) register their sockets as soon
as they exist, a TLS socket before its handshake, which a server can trickle too; leaving the
deadline shuts down any still open, so a failed download never leaves its connection behind.

Not covered: resolving the host name (the system resolver's own timeouts apply) and a proxy's
answer to CONNECT (bounded per read only). TLS verifies against the system's CA certificates, or
the bundle SSL_CERT_FILE / SSL_CERT_DIR name (OpenSSL's own variables), read at each download.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.request
from functools import partial
from types import TracebackType
from typing import Any

from taxi.errors import DeadlineError
from taxi.settings import DOWNLOAD_DEADLINE_ENV


class Deadline:
    """The deadline of one download of `shown` (its URL fit for messages), `seconds` from when
    it is entered. Leaving it after that raises DeadlineError, whatever happened meanwhile."""

    def __init__(self, shown: str, seconds: float) -> None:
        self.shown = shown
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            # A read that timed out at the deadline, before the timer fired, is past it too.
            passed = self._expired or time.monotonic() >= self._ends
            self._expired, sockets, self._sockets = True, self._sockets, []
        # A connection given up on is shut down now, not when the error holding it goes away.
        for sock in sockets:
            _shut_down(sock)
        if passed and (error is None or isinstance(error, Exception)):
            raise self.error() from error

    def error(self) -> DeadlineError:
        return DeadlineError(
            f"{self.shown}: not downloaded within the deadline of {self.seconds:g} s "
            f"({DOWNLOAD_DEADLINE_ENV}: connecting, headers, redirects and body together)"
        )

    def remaining(self) -> float:
        return max(0.0, self._ends - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Have `sock` shut down when the deadline passes; at once if it has."""
        with self._lock:
            if not self._expired:
                self._sockets.append(sock)
                return
        _shut_down(sock)

    def opener(self, *handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
        """urllib's opener with `handlers` (e.g. a redirect policy), each of whose connections
        counts against this deadline; the proxy settings of the environment apply as usual."""
        return urllib.request.build_opener(*handlers, _HTTPHandler(self), _HTTPSHandler(self))

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket: a shutdown of the connection, not a
    # TLS close_notify, which could block on the very server that is too slow.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or not connected yet


def _bounded(timeout: Any, deadline: Deadline) -> float:
    """A connection's socket timeout: its own, never beyond the deadline."""
    remaining = deadline.remaining()
    return min(timeout, remaining) if isinstance(timeout, int | float) else remaining


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, deadline: Deadline, timeout: Any, **kwargs: Any) -> None:
        super().__init__(host, timeout=_bounded(timeout, deadline), **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.watch(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    # Its socket is watched by the context (_TLSContext.wrap_socket).
    def __init__(self, host: str, *, deadline: Deadline, timeout: Any, **kwargs: Any) -> None:
        super().__init__(host, timeout=_bounded(timeout, deadline), **kwargs)


class _TLSContext(ssl.SSLContext):
    """What ssl.create_default_context() makes for a client, whose sockets are watched from
    before their handshake."""

    deadline: Deadline

    def wrap_socket(  # type: ignore[override]
        self, sock: socket.socket, *, do_handshake_on_connect: bool = True, **kwargs: Any
    ) -> ssl.SSLSocket:
        tls = super().wrap_socket(sock, do_handshake_on_connect=False, **kwargs)
        self.deadline.watch(tls)
        if do_handshake_on_connect:
            tls.do_handshake()
        return tls


def _tls_context(deadline: Deadline) -> _TLSContext:
    context = _TLSContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names verified
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    context.deadline = deadline
    return context


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_HTTPConnection, deadline=self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        # Made for each download, so that a CA bundle named since the last one is used.
        self._tls = _tls_context(deadline)
        super().__init__(context=self._tls)
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(_HTTPSConnection, deadline=self._deadline)
        return self.do_open(connection, req, context=self._tls)
