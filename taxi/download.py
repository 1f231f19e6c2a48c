"""Copying one input file to a local file: streamed, with a size cap and a total deadline.

The source is an http(s):// URL, an s3:// URI (read through an opener the caller gives, so
that this module knows nothing of S3 clients) or a local path. Ingestion (taxi.ingest) and
`taxi.load_data`'s remote sources both come through here. The bytes go to disk chunk by
chunk while their sha256 is computed, so a large file is never held in memory. A source that
does not have the file (HTTP 403 or 404, as the TLC's CloudFront answers for a month not
published yet, a missing S3 object or a missing local file) raises `NotPublishedError`; a
file larger than the cap is bad input (`DataError`, not worth retrying), refused before any
of it is read when its size is known beforehand (S3's object size, HTTP's Content-Length)
and otherwise as soon as the bytes received pass the cap; so is a redirect to anything but
http(s)://, or from https:// to http://. A server that stalls, cuts the connection short or
fails with a 5xx raises `DownloadError` (worth retrying), one still going at its deadline
`DeadlineError` (a `DownloadError` the flows do not retry within the same run).

The deadline is checked whenever data arrives; a server that sends nothing at all is cut
off by the socket timeout, which is never longer than the deadline. A download therefore
ends, one way or the other, within at most twice the deadline (and within
deadline + READ_TIMEOUT_SECONDS for deadlines longer than that; S3 reads are bounded by
taxi.storage.objects' read timeout instead).
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from taxi.settings import DEFAULT_DOWNLOAD_DEADLINE_SECONDS, DEFAULT_DOWNLOAD_MAX_BYTES
from taxi.tlc import DataError

READ_TIMEOUT_SECONDS = 30
CHUNK_BYTES = 1024 * 1024
NOT_PUBLISHED_STATUSES = (403, 404)
# (size, chunks) of s3://bucket/key: the size from a HEAD request, the bytes from a GET made
# only when the chunks are first iterated; FileNotFoundError for a missing object.
S3Opener = Callable[[str], tuple[int, Iterator[bytes]]]


class NotPublishedError(Exception):
    """The source has no such file (yet)."""


class DownloadError(RuntimeError):
    """The transfer failed midway or the server failed; trying again later may work."""


class DeadlineError(DownloadError):
    """The transfer was still going when its deadline passed. Worth trying again in a later
    run, not at once: an immediate retry would only hold the run for another deadline."""


@dataclass(frozen=True)
class Download:
    path: Path
    bytes: int
    sha256: str


def download(
    source: str,
    destination: Path,
    *,
    max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES,
    deadline_seconds: float = DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    open_s3: S3Opener | None = None,
) -> Download:
    """Copy `source` (http(s):// URL, s3:// URI read with `open_s3`, or local path) to
    `destination`; returns its size and sha256. On any failure nothing is left at `destination`."""
    deadline = time.monotonic() + deadline_seconds
    try:
        if source.startswith(("http://", "https://")):
            return _download_http(source, destination, max_bytes, deadline, min(READ_TIMEOUT_SECONDS, deadline_seconds))
        if source.startswith("s3://") and open_s3 is not None:
            return _download_s3(source, open_s3, destination, max_bytes, deadline)
        if "://" in source:
            raise ValueError("only http://, https://, s3:// (with an opener) and local paths can be downloaded")
        return _copy_local(source, destination, max_bytes, deadline)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def _download_http(url: str, destination: Path, max_bytes: int, deadline: float, read_timeout: float) -> Download:
    shown = public_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "taxi-duration"})
    try:
        response = _OPENER.open(request, timeout=read_timeout)
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:  # a redirect _NoDowngradeRedirects (or urllib itself) refused
            raise DataError(
                shown, f"redirect refused (HTTP {error.code}): only to http(s)://, and from https:// only to https://"
            ) from None
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
            raise _too_large(shown, expected, max_bytes)
        try:
            result = _stream(shown, _chunks(response), destination, max_bytes, deadline)
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
        return _stream(path, _chunks(source), destination, max_bytes, deadline)


def _download_s3(uri: str, open_s3: S3Opener, destination: Path, max_bytes: int, deadline: float) -> Download:
    try:
        size, chunks = open_s3(uri)
    except FileNotFoundError as error:
        raise NotPublishedError(f"{uri}: no such object") from error
    if size > max_bytes:
        raise _too_large(uri, size, max_bytes)  # before the GET: not a byte of it is read
    result = _stream(uri, chunks, destination, max_bytes, deadline)
    if result.bytes != size:
        raise DownloadError(f"{uri}: read {result.bytes:,} bytes, its size was {size:,} (replaced meanwhile?)")
    return result


def _chunks(reader: io.BufferedIOBase) -> Iterator[bytes]:
    # read1: whatever one receive gives (up to a chunk), so the deadline is checked even
    # against a server that trickles bytes slower than a chunk per socket timeout.
    return iter(lambda: reader.read1(CHUNK_BYTES), b"")


def _too_large(source: str, size: int, max_bytes: int) -> DataError:
    return DataError(source, f"is {size:,} bytes, more than the {max_bytes:,}-byte limit")


def _stream(source: str, chunks: Iterable[bytes], destination: Path, max_bytes: int, deadline: float) -> Download:
    digest = hashlib.sha256()
    size = 0
    with open(destination, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise DataError(source, f"is more than the {max_bytes:,}-byte limit")
            if time.monotonic() > deadline:
                raise DeadlineError(f"{source}: not downloaded within the deadline ({size:,} bytes received)")
            digest.update(chunk)
            out.write(chunk)
    return Download(destination, size, digest.hexdigest())


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s):// only, and from https:// to https:// only: a server (or
    whoever controls it) must not turn a download into a read of ftp:// or file://, or move it
    off TLS. (urllib itself refuses schemes other than http, https and ftp.)"""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        scheme, target = urllib.parse.urlsplit(req.full_url).scheme, urllib.parse.urlsplit(newurl).scheme.lower()
        if target not in ("http", "https") or (scheme == "https" and target != "https"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngradeRedirects)


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
