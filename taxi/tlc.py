"""Reading TLC trip files: where they come from, and the input contract they must meet.

`load_data` reads yellow (`tpep_*`) and green (`lpep_*`) trip records, parquet or CSV, from a
local path, an `s3://bucket/key` URI or an `https://` URL, checks them against the input
contract and returns them with schema-neutral column names (`pickup_datetime`,
`dropoff_datetime`). Only the columns the pipeline uses are read, which keeps a 1.4M-trip
month to a few tens of megabytes. Anything that breaks the contract raises `DataError`, whose
message names the source and what was wrong, never the file's content (a run may be pointed
at a file that is not trip data at all, and its message goes to logs and the Prefect UI).

Remote sources are copied to a temporary file by taxi.download, with its size cap and deadline
(TAXI_DOWNLOAD_MAX_BYTES, TAXI_DOWNLOAD_DEADLINE_SECONDS). `check_source` is the policy on
which sources a deployment's run may name (the flows apply it; see flows/tasks.py).
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.parse
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from taxi.layout import CSV_SUFFIXES, PARQUET_SUFFIXES
from taxi.settings import ALLOW_LOCAL_SOURCES_ENV, SOURCE_BUCKETS_ENV, Settings

if TYPE_CHECKING:
    from taxi.download import S3Opener

# Reads s3://bucket/key and returns its bytes; raises FileNotFoundError for a missing object.
S3Reader = Callable[[str], bytes]
# A local path, or a remote file's bytes in memory.
Raw = str | pa.Buffer

# Datetime column names of each TLC schema.
SCHEMAS: dict[str, tuple[str, str]] = {
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
}
PICKUP, DROPOFF = "pickup_datetime", "dropoff_datetime"
REQUIRED_COLUMNS: tuple[str, ...] = ("PULocationID", "DOLocationID", "passenger_count")
# Read when present (a planned distance is an optional model input); absent means all missing.
OPTIONAL_COLUMNS: tuple[str, ...] = ("trip_distance",)
NUMERIC_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# What Arrow's error messages say that is safe to repeat: counts and positions, never the
# bytes it quotes (a CSV parse error quotes the offending line).
_ARROW_FACTS = re.compile(
    r"Row #\d+|Expected \d+ columns?, got \d+|magic bytes not found|file size is \d+ bytes|Unexpected end of stream"
)


class DataError(ValueError):
    """Input data that cannot be used; the message names the source and the problem.

    Not worth retrying: the same input will fail the same way."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


# --- loading -------------------------------------------------------------------------------


def load_data(source: str, read_s3: S3Reader | None = None) -> pd.DataFrame:
    """Read one TLC trip file and return its trips in file order.

    Columns: pickup_datetime, dropoff_datetime (datetime64), PULocationID, DOLocationID,
    passenger_count, trip_distance (float64, NaN where missing). `attrs` records the source
    and the TLC schema ("yellow" or "green"). `s3://` sources are read with `read_s3`
    (default: taxi.storage's reader, with the S3 settings of the environment).
    """
    with tempfile.TemporaryDirectory(prefix="taxi-load-") as scratch:
        raw = _open(source, read_s3, Path(scratch))
        is_parquet = _is_parquet(source, raw)
        names = _parquet_columns(source, raw) if is_parquet else _csv_columns(source, raw)
        schema, pickup, dropoff = _detect_schema(source, names)
        columns = [pickup, dropoff, *REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names)]
        table = _read_parquet(source, raw, columns) if is_parquet else _read_csv(source, raw, columns)
    table = table.rename_columns([_neutral_name(c, pickup, dropoff) for c in table.column_names])
    # One array per column (no 2-D block consolidation) and the Arrow buffers released as
    # they are converted: a month then costs about one copy of its columns, not three.
    trips = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    trips = _coerce_types(source, trips)
    if trips.empty:
        raise DataError(source, "contains no trips")
    trips.attrs = {"source": source, "schema": schema}
    return trips


def _open(source: str, read_s3: S3Reader | None, scratch: Path) -> Raw:
    """A local path as is; a remote source copied into `scratch` (taxi.download: size cap,
    deadline, no redirect off http(s) or off TLS), or read with the caller's `read_s3`."""
    if source.startswith(("s3://", "http://", "https://")):
        return _download(source, read_s3, scratch)
    if not os.path.isfile(source):
        raise DataError(source, "file not found" if not os.path.exists(source) else "not a file")
    return source


def _download(source: str, read_s3: S3Reader | None, scratch: Path) -> Raw:
    # Imported when first needed: taxi.download imports this module (for DataError), and
    # reading local files never loads boto3.
    from taxi.download import NotPublishedError, download

    settings = Settings.from_env()
    is_s3 = source.startswith("s3://")
    try:
        if is_s3 and read_s3 is not None:  # the caller's own reader: its bytes are capped once read
            data = read_s3(source)
            if len(data) > settings.download_max_bytes:
                raise DataError(source, f"is {len(data):,} bytes, more than the {settings.download_max_bytes:,}-byte limit")
            return pa.py_buffer(data)
        fetched = download(
            source,
            scratch / "source",  # the format comes from `source`'s name, not from this one
            max_bytes=settings.download_max_bytes,
            deadline_seconds=settings.download_deadline_seconds,
            open_s3=_environment_s3_opener() if is_s3 else None,
        )
    except (NotPublishedError, FileNotFoundError) as error:
        status = re.search(r"HTTP \d+", str(error))
        problem = (
            "file not found in S3" if is_s3 else f"download failed with {status[0] if status else 'no file'} (no such file?)"
        )
        raise DataError(source, problem) from error
    return str(fetched.path)


def _environment_s3_opener() -> S3Opener:
    from taxi.storage.objects import open_s3_uri

    return open_s3_uri


def check_source(source: str, buckets: Collection[str], allow_local: bool) -> None:
    """Raise DataError unless `source` is one a deployment's run may read: an s3:// URI in one
    of `buckets`, an https:// URL, or, when `allow_local`, a local path. Anything else (plain
    http://, which reaches the internal network unencrypted, file:// and other schemes, other
    buckets, local files such as /etc/passwd) is refused before it is opened. Pure: the caller
    says which buckets and whether local paths are allowed (taxi.settings)."""
    from taxi.download import public_url  # see _download

    shown = public_url(source)
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if bucket not in buckets or not key:
            allowed = ", ".join(repr(b) for b in buckets)
            raise DataError(shown, f"not in a bucket runs may read ({allowed}; {SOURCE_BUCKETS_ENV} adds others)")
        return
    if source.startswith("https://"):
        if not urllib.parse.urlsplit(source).hostname:
            raise DataError(shown, "an https:// URL needs a host")
        return
    if "://" in source or source.lower().startswith(("http:", "https:", "s3:", "file:")):
        raise DataError(shown, "only s3:// URIs in the project's bucket(s) and https:// URLs are read by deployment runs")
    if not allow_local:
        raise DataError(
            shown,
            f"local paths are not read by deployment runs unless {ALLOW_LOCAL_SOURCES_ENV}=true: "
            "give an s3:// URI in the project's bucket or an https:// URL",
        )


def _suffix(source: str) -> str:
    return source.split("?", 1)[0].lower()


def _is_parquet(source: str, raw: Raw) -> bool:
    name = _suffix(source)
    if name.endswith(PARQUET_SUFFIXES):
        return True
    if name.endswith(CSV_SUFFIXES):
        return False
    head = raw.to_pybytes()[:4] if isinstance(raw, pa.Buffer) else open(raw, "rb").read(4)
    return head == b"PAR1"


def _parquet_columns(source: str, raw: Raw) -> list[str]:
    try:
        return list(pq.read_schema(_reader(raw)).names)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"not a readable parquet file{_arrow_facts(error)}") from None


def _read_parquet(source: str, raw: Raw, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(_reader(raw), columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"parquet file is corrupt or truncated{_arrow_facts(error)}") from None


def _csv_stream(source: str, raw: Raw) -> str | pa.NativeFile:
    stream = _reader(raw)
    if _suffix(source).endswith(".gz"):
        stream = pa.CompressedInputStream(stream, "gzip")
    return stream


def _csv_columns(source: str, raw: Raw) -> list[str]:
    try:
        reader = pacsv.open_csv(_csv_stream(source, raw), read_options=pacsv.ReadOptions(block_size=1 << 16))
        return list(reader.schema.names)
    except (pa.ArrowException, OSError) as error:
        if "Empty CSV file" in str(error):
            raise DataError(source, "file is empty") from None
        raise DataError(source, f"not a readable CSV file{_arrow_facts(error)}") from None


def _read_csv(source: str, raw: Raw, columns: list[str]) -> pa.Table:
    # Everything as text first: type problems are reported per column in _coerce_types.
    options = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
    try:
        return pacsv.read_csv(_csv_stream(source, raw), convert_options=options)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"not a readable CSV file{_arrow_facts(error)}") from None


def _arrow_facts(error: BaseException) -> str:
    """ " (Row #3: Expected 19 columns, got 1)" from Arrow's message, without the line it
    quotes; "" when it says nothing known to be safe. The caller raises `from None`, so that
    Arrow's own message does not reach the logs through the traceback either."""
    facts = _ARROW_FACTS.findall(str(error))
    return f" ({': '.join(facts)})" if facts else ""


def _reader(raw: Raw) -> str | pa.BufferReader:
    return pa.BufferReader(raw) if isinstance(raw, pa.Buffer) else raw


def _detect_schema(source: str, names: list[str]) -> tuple[str, str, str]:
    found = [schema for schema, (pickup, dropoff) in SCHEMAS.items() if pickup in names and dropoff in names]
    if not found:
        expected = " or ".join(f"{p}/{d}" for p, d in SCHEMAS.values())
        # The header is not repeated: the file may be anything (a run pointed at /etc/passwd).
        raise DataError(source, f"not a TLC yellow or green trip file: no {expected} columns ({len(names)} column(s) found)")
    schema = found[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DataError(source, f"required column(s) {missing} missing from this {schema} trip file")
    return (schema, *SCHEMAS[schema])


def _neutral_name(column: str, pickup: str, dropoff: str) -> str:
    return {pickup: PICKUP, dropoff: DROPOFF}.get(column, column)


def _coerce_types(source: str, trips: pd.DataFrame) -> pd.DataFrame:
    """Datetimes must parse and numbers must be numbers; blanks become missing values.

    Columns already of the right kind (as in TLC parquet files) are left as they are."""
    for column in (PICKUP, DROPOFF):
        values = trips[column]
        if not pd.api.types.is_datetime64_any_dtype(values):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
            _check_coercion(source, column, values, parsed, "datetimes")
            trips[column] = parsed
    for column in NUMERIC_COLUMNS:
        if column not in trips:
            trips[column] = np.full(len(trips), np.nan)
            continue
        values = trips[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            parsed = pd.to_numeric(values, errors="coerce")
            _check_coercion(source, column, values, parsed, "numbers")
            trips[column] = parsed.astype(np.float64)
    return trips[[PICKUP, DROPOFF, *NUMERIC_COLUMNS]]


def _check_coercion(source: str, column: str, before: pd.Series, after: pd.Series, kind: str) -> None:
    blank = before.isna() | (before.astype("string").str.strip() == "")
    bad = after.isna() & ~blank
    if bad.any():
        # Where, not what: the values themselves are the file's content.
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(
            source, f"column {column!r} has {int(bad.sum())} value(s) that are not {kind}, the first in trip row {first}"
        )
