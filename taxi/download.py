"""Copying one input file to a local file: streamed, with a size cap and a total deadline.

The source is an http(s):// URL or a local path. The bytes go to disk chunk by chunk while
their sha256 is computed, so a large file is never held in memory. A source that does not
have the file (HTTP 403 or 404, as the TLC's CloudFront answers for a month not published
yet, or a missing local file) raises `NotPublishedError`; a file larger than the cap is bad
input (`DataError`, not worth retrying); a server that stalls, cuts the connection short or
fails with a 5xx raises `DownloadError` (worth retrying).

The deadline is checked whenever data arrives; a server that sends nothing at all is cut
off by the socket timeout, which is never longer than the deadline. A download therefore
ends, one way or the other, within at most twice the deadline (and within
deadline + READ_TIMEOUT_SECONDS for deadlines longer than that).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from taxi.config import DOWNLOAD_DEADLINE_SECONDS, DOWNLOAD_MAX_BYTES
from taxi.tlc import DataError

READ_TIMEOUT_SECONDS = 30
CHUNK_BYTES = 1024 * 1024
NOT_PUBLISHED_STATUSES = (403, 404)


class NotPublishedError(Exception):
    """The source has no such file (yet)."""


class DownloadError(RuntimeError):
    """The transfer failed midway or the server failed; trying again later may work."""


@dataclass(frozen=True)
class Download:
    path: Path
    bytes: int
    sha256: str


def download(
    source: str,
    destination: Path,
    *,
    max_bytes: int = DOWNLOAD_MAX_BYTES,
    deadline_seconds: float = DOWNLOAD_DEADLINE_SECONDS,
) -> Download:
    """Copy `source` (http(s):// URL or local path) to `destination`; returns its size and
    sha256. On any failure nothing is left at `destination`."""
    deadline = time.monotonic() + deadline_seconds
    try:
        if source.startswith(("http://", "https://")):
            return _download_http(source, destination, max_bytes, deadline, min(READ_TIMEOUT_SECONDS, deadline_seconds))
        if "://" in source:
            raise ValueError("only http://, https:// and local paths can be downloaded")
        return _copy_local(source, destination, max_bytes, deadline)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def _download_http(url: str, destination: Path, max_bytes: int, deadline: float, read_timeout: float) -> Download:
    shown = public_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "taxi-duration"})
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout)
    except urllib.error.HTTPError as error:
        if error.code in NOT_PUBLISHED_STATUSES:
            raise NotPublishedError(f"{shown}: HTTP {error.code} (not published)") from error
        if error.code >= 500:
            raise DownloadError(f"{shown}: HTTP {error.code} from the server") from error
        raise DataError(shown, f"download refused with HTTP {error.code}") from error
    except (urllib.error.URLError, OSError) as error:  # refused, unresolvable, timed out connecting
        raise DownloadError(f"{shown}: no answer ({_reason(error)})") from error
    with response:
        announced = response.headers.get("Content-Length")
        expected = int(announced) if announced and announced.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise DataError(shown, f"is {expected:,} bytes, more than the {max_bytes:,}-byte limit")
        try:
            result = _stream(shown, response, destination, max_bytes, deadline)
        except (http.client.HTTPException, OSError) as error:  # IncompleteRead, reset, socket timeout
            raise DownloadError(f"{shown}: download interrupted ({_reason(error)})") from error
    if expected is not None and result.bytes != expected:
        raise DownloadError(f"{shown}: connection closed after {result.bytes:,} of {expected:,} bytes")
    return result


def _copy_local(path: str, destination: Path, max_bytes: int, deadline: float) -> Download:
    if not os.path.exists(path):
        raise NotPublishedError(f"{path}: no such file (not published)")
    if not os.path.isfile(path):
        raise DataError(path, "not a file")
    with open(path, "rb") as source:
        return _stream(path, source, destination, max_bytes, deadline)


def _stream(source: str, reader: io.BufferedIOBase, destination: Path, max_bytes: int, deadline: float) -> Download:
    digest = hashlib.sha256()
    size = 0
    with open(destination, "wb") as out:
        # read1: whatever one receive gives (up to a chunk), so the deadline is checked even
        # against a server that trickles bytes slower than a chunk per socket timeout.
        while chunk := reader.read1(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise DataError(source, f"is more than the {max_bytes:,}-byte limit")
            if time.monotonic() > deadline:
                raise DownloadError(f"{source}: not downloaded within the deadline ({size:,} bytes received)")
            digest.update(chunk)
            out.write(chunk)
    return Download(destination, size, digest.hexdigest())


def public_url(source: str) -> str:
    """`source` fit for logs, errors and records: an URL without user, password or query
    string (a mirror's URL may carry credentials or a signature there)."""
    if "://" not in source:
        return source
    parts = urllib.parse.urlsplit(source)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason", None) or error) or type(error).__name__
