"""Reading TLC trip files: where they come from, and the input contract they must meet.

`load_data` reads yellow (`tpep_*`) and green (`lpep_*`) trip records, parquet or CSV, from a
local path, an `s3://bucket/key` URI or an `https://` URL, checks them against the input
contract and returns them with schema-neutral column names (`pickup_datetime`,
`dropoff_datetime`). Only the columns the pipeline uses are read, which keeps a 1.4M-trip
month to a few tens of megabytes. Anything that breaks the contract raises `DataError`.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from taxi.layout import CSV_SUFFIXES, PARQUET_SUFFIXES

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
HTTP_TIMEOUT_SECONDS = 60


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
    raw = _open(source, read_s3)
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


def _open(source: str, read_s3: S3Reader | None) -> Raw:
    """A local path as is; remote sources as an in-memory buffer (a month is tens of MB)."""
    if source.startswith("s3://"):
        try:
            return pa.py_buffer((read_s3 or _environment_s3_reader())(source))
        except FileNotFoundError as error:
            raise DataError(source, "file not found in S3") from error
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return pa.py_buffer(response.read())
        except urllib.error.HTTPError as error:
            if error.code in (403, 404, 410):
                raise DataError(source, f"download failed with HTTP {error.code} (no such file?)") from error
            raise  # 5xx and the like are worth a retry
    if not os.path.isfile(source):
        raise DataError(source, "file not found" if not os.path.exists(source) else "not a file")
    return source


def _environment_s3_reader() -> S3Reader:
    # Imported when first needed, so that reading local files never loads boto3.
    from taxi.storage.objects import read_s3_uri

    return read_s3_uri


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
        raise DataError(source, f"not a readable parquet file ({error})") from error


def _read_parquet(source: str, raw: Raw, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(_reader(raw), columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"parquet file is corrupt or truncated ({error})") from error


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
            raise DataError(source, "file is empty") from error
        raise DataError(source, f"not a readable CSV file ({error})") from error


def _read_csv(source: str, raw: Raw, columns: list[str]) -> pa.Table:
    # Everything as text first: type problems are reported per column in _coerce_types.
    options = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
    try:
        return pacsv.read_csv(_csv_stream(source, raw), convert_options=options)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"not a readable CSV file ({error})") from error


def _reader(raw: Raw) -> str | pa.BufferReader:
    return pa.BufferReader(raw) if isinstance(raw, pa.Buffer) else raw


def _detect_schema(source: str, names: list[str]) -> tuple[str, str, str]:
    found = [schema for schema, (pickup, dropoff) in SCHEMAS.items() if pickup in names and dropoff in names]
    if not found:
        expected = " or ".join(f"{p}/{d}" for p, d in SCHEMAS.values())
        raise DataError(source, f"not a TLC yellow or green trip file: no {expected} columns (has {names[:12]})")
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
        examples = before[bad].astype(str).unique()[:3].tolist()
        raise DataError(source, f"column {column!r} has {int(bad.sum())} value(s) that are not {kind}, e.g. {examples}")
