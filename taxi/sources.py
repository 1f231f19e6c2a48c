"""Where an input may come from, and how it is opened.

A source is a local path, an `s3://bucket/key` URI or an `https://` (or `http://`) URL.
`check_source` is the policy on which sources a deployment's run may name (the flows apply
it). `load_data` reads one TLC trip file from any source: `open_source` makes the source a
local file and taxi.tlc reads it against the input contract.

Remote sources are copied to a local file by `download`: streamed, with a size cap and a
total deadline (TAXI_DOWNLOAD_MAX_BYTES, TAXI_DOWNLOAD_DEADLINE_SECONDS), while their sha256
is computed, so a large file is never held in memory. Ingestion (taxi.ingest) uses it too.
A source that does not have the file (HTTP 403 or 404, as the TLC's CloudFront answers for a
month not published yet, a missing S3 object or a missing local file) raises
`NotPublishedError`; a file larger than the cap is bad input (`DataError`, not worth
retrying), refused before any of it is read when its size is known beforehand (S3's object
size, HTTP's Content-Length) and otherwise as soon as the bytes received pass the cap; so is
a redirect to anything but http(s)://, or from https:// to http://. A server that stalls,
cuts the connection short or fails with a 5xx raises `DownloadError` (worth retrying), one
still going at its deadline `DeadlineError` (a `DownloadError`: each retry has a deadline of
its own).

An HTTP(S) download's deadline is total (taxi.deadline): connecting, headers, redirects and
body must be done by then, or its connection is shut down, however slowly the server sends.
Local and S3 copies check it as data arrives (S3 reads are also bounded by
taxi.storage.objects' read timeout).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from taxi.deadline import Deadline
from taxi.errors import DataError, DeadlineError, DownloadError, NotPublishedError
from taxi.settings import (
    ALLOW_LOCAL_SOURCES_ENV,
    DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    DEFAULT_DOWNLOAD_MAX_BYTES,
    SOURCE_BUCKETS_ENV,
    Settings,
)
from taxi.tlc import Caps, read_trips

READ_TIMEOUT_SECONDS = 30
CHUNK_BYTES = 1024 * 1024
NOT_PUBLISHED_STATUSES = (403, 404)
REMOTE_SCHEMES = ("s3://", "http://", "https://")
# (size, chunks) of s3://bucket/key: the size from a HEAD request, the bytes from a GET made
# only when the chunks are first iterated; FileNotFoundError for a missing object.
S3Opener = Callable[[str], tuple[int, Iterator[bytes]]]


# --- which sources a deployment's run may read -----------------------------------------------


def check_source(source: str, buckets: Collection[str], allow_local: bool) -> None:
    """Raise DataError unless `source` is one a deployment's run may read: an s3:// URI in one
    of `buckets`, an https:// URL, or, when `allow_local`, a local path. Anything else (plain
    http://, which reaches the internal network unencrypted, file:// and other schemes, other
    buckets, local files such as /etc/passwd) is refused before it is opened. Pure: the caller
    says which buckets and whether local paths are allowed (taxi.settings)."""
    shown = public_url(source)
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if bucket not in buckets or not key:
            allowed = ", ".join(repr(b) for b in buckets)
            problem = f"not in a bucket runs may read ({allowed}; {SOURCE_BUCKETS_ENV} adds others)"
            raise DataError(shown, problem)
        return
    if source.startswith("https://"):
        if not urllib.parse.urlsplit(source).hostname:
            raise DataError(shown, "an https:// URL needs a host")
        return
    if "://" in source or source.lower().startswith(("http:", "https:", "s3:", "file:")):
        readable = "s3:// URIs in the project's bucket(s) and https:// URLs"
        raise DataError(shown, f"only {readable} are read by deployment runs")
    if not allow_local:
        raise DataError(
            shown,
            f"local paths are not read by deployment runs unless {ALLOW_LOCAL_SOURCES_ENV}=true: "
            "give an s3:// URI in the project's bucket or an https:// URL",
        )


# --- reading one trip file from any source ---------------------------------------------------


def load_data(source: str) -> pd.DataFrame:
    """Read one TLC trip file (parquet, CSV or gzipped CSV) from a local path, an s3:// URI or
    an https:// URL and return its trips in file order, checked against the input contract
    (taxi.tlc.read_trips has the columns). Remote sources are bounded by the size cap and
    deadline of the settings; `s3://` ones are read with the S3 settings of the environment.
    Every file, local ones too, is bounded by the settings' caps on its rows and its bytes
    once decompressed (TAXI_MAX_ROWS, TAXI_DOWNLOAD_MAX_BYTES). `attrs["sha256"]` is the
    sha256 of the very bytes read: those of a private copy, hashed as it was made, so a
    source replaced while it is read never passes for the one hashed."""
    settings = Settings.from_env()
    digests: list[str] = []

    def opener(name: str) -> AbstractContextManager[str]:
        return open_source(name, digests.append)

    trips = read_trips(source, opener, Caps(settings.max_rows, settings.download_max_bytes))
    trips.attrs["sha256"] = digests[-1]
    return trips


@contextmanager
def open_source(source: str, on_copied: Callable[[str], None] | None = None) -> Iterator[str]:
    """`source` as a local file (taxi.tlc's Opener): a local path as it is; a remote source
    copied to a temporary file removed on exit (size cap, deadline, no redirect off http(s) or
    off TLS). With `on_copied`, a local path is copied too, and `on_copied` is given the
    copy's sha256. DataError when there is no such file."""
    is_local = not source.startswith(REMOTE_SCHEMES)
    if is_local:
        if not os.path.isfile(source):
            problem = "file not found" if not os.path.exists(source) else "not a file"
            raise DataError(source, problem)
        if on_copied is None:
            yield source
            return
    with tempfile.TemporaryDirectory(prefix="taxi-load-") as scratch:
        # The format comes from `source`'s name, not from this one.
        destination = Path(scratch) / "source"
        if is_local:
            # Uncapped: taxi.tlc caps what a file unpacks to, local ones as before.
            fetched = download(source, destination, max_bytes=sys.maxsize, deadline_seconds=1e9)
        else:
            fetched = _fetch(source, destination)
        if on_copied is not None:
            on_copied(fetched.sha256)
        yield str(fetched.path)


def _fetch(source: str, destination: Path) -> Download:
    settings = Settings.from_env()
    is_s3 = source.startswith("s3://")
    try:
        fetched = download(
            source,
            destination,
            max_bytes=settings.download_max_bytes,
            deadline_seconds=settings.download_deadline_seconds,
            open_s3=_environment_s3_opener() if is_s3 else None,
        )
    except (NotPublishedError, FileNotFoundError) as error:
        status = re.search(r"HTTP \d+", str(error))
        answer = status[0] if status else "no file"
        problem = f"download failed with {answer} (no such file?)"
        raise DataError(source, "file not found in S3" if is_s3 else problem) from error
    return fetched


def _environment_s3_opener() -> S3Opener:
    # Imported when an s3:// source is opened: reading local files and URLs never loads boto3.
    from taxi.storage.objects import open_s3_uri

    return open_s3_uri


# --- streamed copies with a size cap and a deadline ------------------------------------------


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
            with Deadline(public_url(source), deadline_seconds) as total:
                return _download_http(source, destination, max_bytes, deadline, total)
        if source.startswith("s3://") and open_s3 is not None:
            return _download_s3(source, open_s3, destination, max_bytes, deadline)
        if "://" in source:
            readable = "http://, https://, s3:// (with an opener) and local paths"
            raise ValueError(f"only {readable} can be downloaded")
        return _copy_local(source, destination, max_bytes, deadline)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def _download_http(
    url: str,
    destination: Path,
    max_bytes: int,
    deadline: float,
    total: Deadline,
) -> Download:
    shown = public_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "taxi-duration"})
    try:
        response = total.opener(_NoDowngradeRedirects).open(request, timeout=READ_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:  # a redirect _NoDowngradeRedirects (or urllib itself) refused
            allowed = "only to http(s)://, and from https:// only to https://"
            raise DataError(shown, f"redirect refused (HTTP {error.code}): {allowed}") from None
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
        except (http.client.HTTPException, OSError) as error:  # IncompleteRead, reset, timeout
            raise DownloadError(f"{shown}: download interrupted ({_reason(error)})") from error
    if expected is not None and result.bytes != expected:
        received = f"{result.bytes:,} of {expected:,} bytes"
        raise DownloadError(f"{shown}: connection closed after {received}")
    return result


def _copy_local(path: str, destination: Path, max_bytes: int, deadline: float) -> Download:
    if not os.path.exists(path):
        raise NotPublishedError(f"{path}: no such file (not published)")
    if not os.path.isfile(path):
        raise DataError(path, "not a file")
    with open(path, "rb") as source:
        return _stream(path, _chunks(source), destination, max_bytes, deadline)


def _download_s3(
    uri: str,
    open_s3: S3Opener,
    destination: Path,
    max_bytes: int,
    deadline: float,
) -> Download:
    try:
        size, chunks = open_s3(uri)
    except FileNotFoundError as error:
        raise NotPublishedError(f"{uri}: no such object") from error
    if size > max_bytes:
        raise _too_large(uri, size, max_bytes)  # before the GET: not a byte of it is read
    result = _stream(uri, chunks, destination, max_bytes, deadline)
    if result.bytes != size:
        read = f"read {result.bytes:,} bytes, its size was {size:,}"
        raise DownloadError(f"{uri}: {read} (replaced meanwhile?)")
    return result


def _chunks(reader: io.BufferedIOBase) -> Iterator[bytes]:
    # read1: whatever one receive gives (up to a chunk), so the deadline is checked even
    # against a server that trickles bytes slower than a chunk per socket timeout.
    return iter(lambda: reader.read1(CHUNK_BYTES), b"")


def _too_large(source: str, size: int, max_bytes: int) -> DataError:
    return DataError(source, f"is {size:,} bytes, more than the {max_bytes:,}-byte limit")


def _stream(
    source: str,
    chunks: Iterable[bytes],
    destination: Path,
    max_bytes: int,
    deadline: float,
) -> Download:
    digest = hashlib.sha256()
    size = 0
    with open(destination, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise DataError(source, f"is more than the {max_bytes:,}-byte limit")
            if time.monotonic() > deadline:
                received = f"{size:,} bytes received"
                raise DeadlineError(f"{source}: not downloaded within the deadline ({received})")
            digest.update(chunk)
            out.write(chunk)
    return Download(destination, size, digest.hexdigest())


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s):// only, and from https:// to https:// only: a server (or
    whoever controls it) must not turn a download into a read of ftp:// or file://, or move it
    off TLS. (urllib itself refuses schemes other than http, https and ftp.)"""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        scheme = urllib.parse.urlsplit(req.full_url).scheme
        target = urllib.parse.urlsplit(newurl).scheme.lower()
        if target not in ("http", "https") or (scheme == "https" and target != "https"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
