"""Copying the TLC's monthly trip files into the bucket, and knowing which months are there.

Bucket keys (taxi.layout): data/<color>/<the TLC's file name> and, written last, its data
manifest next to it (<file name>.manifest.json), signed with a signing key (taxi.data_manifests).

A month is in the bucket when both exist: the manifest is written only after the file is
stored and read back intact, so a half-done ingestion never counts. Nor does a month after the
current one (UTC), which the TLC cannot have published: its keys are ignored and named in the
runs' logs (bucket_months). Before anything is
written, the download is checked against the input contract (`taxi.load_data`, the same
checks every training and inference run applies), so nothing of a bad or truncated file
ever appears under data/.

The source is a folder of monthly files (TAXI_TLC_BASE_URL, default the TLC's public one:
see taxi.settings): an https:// URL (e.g. an operator's mirror; never plain http://) or a
local directory holding files of the same names. A file missing there counts as not
published yet.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import taxi
from taxi.data_manifests import delete_data_manifest, write_data_manifest
from taxi.errors import DataError, NotPublishedError
from taxi.layout import (
    DATA_MANIFEST_SUFFIX,
    data_color_prefix,
    data_key,
    parse_tlc_file_name,
    tlc_file_name,
)
from taxi.months import Month, month_name, month_of, month_range, parse_month, shift_month
from taxi.records import DataManifest
from taxi.settings import (
    DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    DEFAULT_DOWNLOAD_MAX_BYTES,
    TLC_BASE_URL_ENV,
)
from taxi.sources import download, load_data, public_url
from taxi.storage.errors import IntegrityError
from taxi.storage.objects import ObjectStore

COLORS = ("yellow", "green")
# The TLC's trip records start in January 2009 (yellow); nothing older can be asked for.
FIRST_TLC_MONTH: Month = (2009, 1)
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def check_color(color: object) -> str:
    """The colour as given, or an error that does not repeat what was given."""
    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}")
    return str(color)


def check_base_url(base_url: str) -> str:
    """`base_url` if months may be copied from it: an https:// URL or a local directory. Plain
    http:// is refused: whoever sits on the way could hand over other files, which the bucket
    would then keep, with manifests vouching for them. The error names the variable, never
    its value (a mirror's URL may carry credentials)."""
    if base_url.startswith("https://") and urllib.parse.urlsplit(base_url).hostname:
        return base_url
    if "://" in base_url or base_url.lower().startswith(("http:", "https:")):
        raise ValueError(
            f"{TLC_BASE_URL_ENV} must be an https:// URL with a host or a local directory "
            "(a mirror over plain http:// is refused)"
        )
    return base_url


def month_source(base_url: str, color: str, month: Month) -> str:
    """Where one month's file is: an URL under an https:// base, else a path in a directory."""
    name = tlc_file_name(check_color(color), month)
    if check_base_url(base_url).startswith("https://"):
        return f"{base_url.rstrip('/')}/{name}"
    return os.path.join(base_url, name)


# Logged (with the key) for each key of a month after the current one.
FUTURE_MONTH_WARNING = "Ignoring %s: its month is after the current one, so it is no TLC file"


@dataclass(frozen=True)
class BucketMonths:
    """The months of one colour in the bucket, and the keys left out of them."""

    months: list[Month]  # file and manifest both there, oldest first
    # Keys (with their month) of months after the current one. No TLC file can be from the
    # future: whoever can write the bucket could otherwise end ingestion ("continue after the
    # newest month") and choose the window's test month with one object.
    future: list[tuple[Month, str]]
    # Months with a data file but no manifest (an ingestion that died midway, or a file put
    # there by hand or swapped in with its manifest removed): not in the bucket for ingestion,
    # but a training window that reaches one fails naming it rather than skipping over it.
    without_manifest: list[Month] = field(default_factory=list)

    @property
    def with_files(self) -> list[Month]:
        return sorted(set(self.months) | set(self.without_manifest))


def bucket_months(store: ObjectStore, color: str, today: date | None = None) -> BucketMonths:
    """The months of `color` in the bucket up to the current month (UTC), and the keys of later
    ones, which count for nothing."""
    prefix = data_color_prefix(check_color(color))
    current = month_of(today or datetime.now(UTC).date())
    files, manifests, future = set(), set(), []
    for key in store.list_keys(prefix):
        name = key[len(prefix) :]
        is_manifest = name.endswith(DATA_MANIFEST_SUFFIX)
        parsed = parse_tlc_file_name(
            name.removesuffix(DATA_MANIFEST_SUFFIX) if is_manifest else name
        )
        if parsed is None or parsed[0] != color:
            continue
        if parsed[1] > current:
            future.append((parsed[1], key))
            continue
        (manifests if is_manifest else files).add(parsed[1])
    return BucketMonths(sorted(files & manifests), sorted(future), sorted(files - manifests))


def months_present(store: ObjectStore, color: str, today: date | None = None) -> list[Month]:
    """The months of `color` in the bucket (file and manifest both there), oldest first; none
    after the current month (see bucket_months)."""
    return bucket_months(store, color, today).months


def requested_months(
    start: str | None, end: str | None, today: date | None = None
) -> tuple[Month | None, Month]:
    """The first and last month a run asked for with `start`..`end` ("YYYY-MM", both
    included): without `start` the first is None (the month after the newest one in the
    bucket), without `end` the last is the current month (UTC)."""
    current = month_of(today or datetime.now(UTC).date())
    last = parse_month(end, "end") if end is not None else current
    if last > current:
        raise ValueError(f"end must not be after the current month ({month_name(current)})")
    if start is None:
        return None, last
    first = parse_month(start, "start")
    if first < FIRST_TLC_MONTH:
        raise ValueError(
            f"start must not be before {month_name(FIRST_TLC_MONTH)}, the TLC's first month"
        )
    if first > last:
        raise ValueError(f"start must not be after end ({month_name(last)})")
    return first, last


def months_to_ingest(
    color: str, first: Month | None, last: Month, present: list[Month]
) -> list[Month]:
    """The months from `first` to `last` (see requested_months). Without `first`: the months
    after the newest one in the bucket (`present`), which must then hold at least one."""
    check_color(color)
    if first is None:
        if not present:
            raise ValueError(
                f"no {color} month is in the bucket yet, so there is nothing to continue from: "
                "give start (YYYY-MM), the first month to ingest"
            )
        return month_range(shift_month(max(present), 1), last)
    return month_range(first, last)


@dataclass(frozen=True)
class MonthResult:
    """What ingesting one month did: "ingested" (with its manifest) or "not available"."""

    month: str
    status: str
    detail: str
    manifest: DataManifest | None = None


def ingest_month(
    store: ObjectStore,
    color: str,
    month: Month,
    base_url: str,
    *,
    max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES,
    deadline_seconds: float = DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    signing_key: bytes | None = None,
) -> MonthResult:
    """Copy one month from `base_url` into the bucket: download to a temporary file, check it
    against the input contract, store it, read it back, then write its manifest (signed with
    `signing_key`, if given: taxi.data_manifests).

    A month the source does not have yet gives status "not available" and writes nothing.
    Bad data raises DataError, a failed transfer DownloadError; either way nothing new is
    left under data/ for this month."""
    source = month_source(base_url, color, month)
    shown = public_url(source)
    key = data_key(color, month)
    with tempfile.TemporaryDirectory(prefix="taxi-ingest-") as scratch:
        # The TLC's file name keeps the suffix load_data reads the format from.
        try:
            fetched = download(
                source,
                Path(scratch) / tlc_file_name(color, month),
                max_bytes=max_bytes,
                deadline_seconds=deadline_seconds,
            )
        except NotPublishedError as error:
            return MonthResult(month_name(month), "not available", str(error))
        rows, schema = _check_contract(fetched.path, shown, color)
        # A manifest left from an earlier copy must not vouch for the file being replaced.
        delete_data_manifest(store, color, month)
        try:
            store.put_file_verified(key, fetched.path, fetched.sha256, PARQUET_CONTENT_TYPE)
        except IntegrityError:
            store.delete(key)  # not the month downloaded: it must not be taken for one
            raise
    manifest: DataManifest = {
        "color": color,
        "month": month_name(month),
        "key": key,
        "source": shown,
        "bytes": fetched.bytes,
        "sha256": fetched.sha256,
        "rows": rows,
        "schema": schema,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": taxi.__version__,
    }
    write_data_manifest(store, manifest, month, signing_key)
    return MonthResult(
        month_name(month), "ingested", f"{rows:,} trips, {fetched.bytes:,} bytes", manifest
    )


def _check_contract(path: Path, source: str, color: str) -> tuple[int, str]:
    """Rows and TLC schema of a downloaded file, after load_data's checks; errors name the
    source, not the temporary file."""
    try:
        trips = load_data(str(path))
    except DataError as error:
        raise DataError(source, error.problem) from error
    schema = trips.attrs["schema"]
    if schema != color:
        raise DataError(source, f"is a {schema} trip file, expected {color}")
    return len(trips), schema
