"""Reading TLC trip files: the input contract they must meet.

`read_trips` reads yellow (`tpep_*`) and green (`lpep_*`) trip records, parquet or CSV (or
gzipped CSV), checks them against the input contract and returns them with schema-neutral
column names (`pickup_datetime`, `dropoff_datetime`). Only the columns the pipeline uses are
read, which keeps a month small in memory. Anything that breaks the contract raises
`DataError`, whose message names the source and what was wrong, never the file's content (a
run may be pointed at a file that is not trip data at all, and its message goes to logs and
the Prefect UI).

Where a file comes from is not this module's business: it is given an opener that makes the
source a local file (taxi.sources.open_source for a local path, s3:// or https://, with the
size cap and deadline of the settings; `taxi.load_data` strings the two together).

What one file may hold is capped (`Caps`: rows, and bytes once decompressed; taxi.sources
passes TAXI_MAX_ROWS and TAXI_DOWNLOAD_MAX_BYTES). A few MB of parquet or gzip can decompress
to far more than fits in memory (one repeated value, dictionary- or run-length-encoded, costs
next to nothing per row on disk and 8 bytes per row read), so the size on disk says little:
a parquet file is refused on what its footer declares, before any of its data is read; a CSV
as soon as its decompressed bytes or its rows pass a cap, reading no further.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from taxi.errors import DataError
from taxi.layout import CSV_SUFFIXES, PARQUET_SUFFIXES
from taxi.settings import (
    DEFAULT_DOWNLOAD_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    DOWNLOAD_MAX_BYTES_ENV,
    MAX_ROWS_ENV,
)

# Makes a source readable as a local file: entered, it gives the path of a file holding the
# source's bytes (a local source's own path, or a copy removed on exit); raises DataError
# when the source cannot be opened. The format is read from the source's name, not the path's.
Opener = Callable[[str], AbstractContextManager[str]]

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
    r"Row #\d+|Expected \d+ columns?, got \d+|magic bytes not found|file size is \d+ bytes"
    r"|Unexpected end of stream"
)


@dataclass(frozen=True)
class Caps:
    """How much one file may hold: rows, and bytes once decompressed (for parquet, the
    uncompressed size its footer declares)."""

    rows: int = DEFAULT_MAX_ROWS
    bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES


def read_trips(source: str, opener: Opener, caps: Caps = Caps()) -> pd.DataFrame:
    """Read one TLC trip file, opened with `opener`, and return its trips in file order.

    Columns: pickup_datetime, dropoff_datetime (datetime64), PULocationID, DOLocationID,
    passenger_count, trip_distance (float64, NaN where missing). `attrs` records the source
    and the TLC schema ("yellow" or "green"). A file holding more than `caps` raises
    DataError naming the cap.
    """
    with opener(source) as path:
        is_parquet = _is_parquet(source, path)
        if is_parquet:
            names = _parquet_columns(source, path, caps)
        else:
            names = _csv_columns(source, path)
        schema, pickup, dropoff = _detect_schema(source, names)
        optional = [c for c in OPTIONAL_COLUMNS if c in names]
        columns = [pickup, dropoff, *REQUIRED_COLUMNS, *optional]
        if is_parquet:
            table = _read_parquet(source, path, columns)
        else:
            table = _read_csv(source, path, columns, caps)
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


def _suffix(source: str) -> str:
    return source.split("?", 1)[0].lower()


def _is_parquet(source: str, path: str) -> bool:
    name = _suffix(source)
    if name.endswith(PARQUET_SUFFIXES):
        return True
    if name.endswith(CSV_SUFFIXES):
        return False
    with open(path, "rb") as file:
        return file.read(4) == b"PAR1"


def _parquet_columns(source: str, path: str, caps: Caps) -> list[str]:
    """The column names in the file's footer, once the rows and uncompressed bytes the footer
    declares are within `caps`: only the footer has been read when a file is refused."""
    try:
        footer = pq.read_metadata(path)
        names = list(footer.schema.to_arrow_schema().names)
    except (pa.ArrowException, OSError) as error:
        problem = f"not a readable parquet file{_arrow_facts(error)}"
        raise DataError(source, problem) from None
    # Each row group's count, which the reader goes by, rather than the file's total.
    rows = size = 0
    for index in range(footer.num_row_groups):
        group = footer.row_group(index)
        rows, size = rows + group.num_rows, size + group.total_byte_size
    if rows > caps.rows:
        limit = f"the {caps.rows:,}-row limit ({MAX_ROWS_ENV})"
        raise DataError(source, f"declares {rows:,} rows, more than {limit}")
    if size > caps.bytes:
        limit = f"the {caps.bytes:,}-byte limit ({DOWNLOAD_MAX_BYTES_ENV})"
        raise DataError(source, f"declares {size:,} bytes uncompressed, more than {limit}")
    return names


def _read_parquet(source: str, path: str, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as error:
        problem = f"parquet file is corrupt or truncated{_arrow_facts(error)}"
        raise DataError(source, problem) from None


def _csv_stream(source: str, path: str) -> str | pa.NativeFile:
    if _suffix(source).endswith(".gz"):
        return pa.CompressedInputStream(path, "gzip")
    return path


def _csv_columns(source: str, path: str) -> list[str]:
    options = pacsv.ReadOptions(block_size=1 << 16)
    try:
        return list(pacsv.open_csv(_csv_stream(source, path), read_options=options).schema.names)
    except (pa.ArrowException, OSError) as error:
        if "Empty CSV file" in str(error):
            raise DataError(source, "file is empty") from None
        raise DataError(source, f"not a readable CSV file{_arrow_facts(error)}") from None


def _read_csv(source: str, path: str, columns: list[str], caps: Caps) -> pa.Table:
    """The file's `columns`, read batch by batch through a stream that stops past the byte
    cap, and no further than the row cap."""
    # Everything as text first: type problems are reported per column in _coerce_types.
    as_text = {c: pa.string() for c in columns}
    options = pacsv.ConvertOptions(include_columns=columns, column_types=as_text)
    compression = "gzip" if _suffix(source).endswith(".gz") else None
    batches, rows = [], 0
    with pa.input_stream(path, compression=compression) as stream:
        counted = _Counted(stream, caps.bytes)
        try:
            reader = pacsv.open_csv(pa.PythonFile(counted, mode="r"), convert_options=options)
            with reader:
                for batch in reader:
                    rows += batch.num_rows
                    if rows > caps.rows:
                        limit = f"the {caps.rows:,}-row limit ({MAX_ROWS_ENV})"
                        raise DataError(source, f"has more than {limit}")
                    batches.append(batch)
                schema = reader.schema
        except (_ByteCapError, pa.ArrowException, OSError) as error:
            if counted.over:  # whether Arrow passed the stream's exception on or its own
                limit = f"the {caps.bytes:,}-byte limit ({DOWNLOAD_MAX_BYTES_ENV})"
                decompressed = " decompressed" if compression else ""
                raise DataError(source, f"is more than {limit}{decompressed}") from None
            raise DataError(source, f"not a readable CSV file{_arrow_facts(error)}") from None
    return pa.Table.from_batches(batches, schema)


class _ByteCapError(Exception):
    """A CSV stream went past its byte cap (raised through Arrow's reader)."""


class _Counted(io.RawIOBase):
    """A read-only stream of `stream`'s bytes that raises _ByteCapError rather than give more
    than `cap` bytes: the reader stops there, however far a small .gz would decompress."""

    def __init__(self, stream: pa.NativeFile, cap: int) -> None:
        super().__init__()
        self._stream, self._cap = stream, cap
        self.count, self.over = 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self._stream.read(len(buffer))
        self.count += len(data)
        if self.count > self._cap:
            self.over = True
            raise _ByteCapError
        buffer[: len(data)] = data
        return len(data)


def _arrow_facts(error: BaseException) -> str:
    """ " (Row #3: Expected 19 columns, got 1)" from Arrow's message, without the line it
    quotes; "" when it says nothing known to be safe. The caller raises `from None`, so that
    Arrow's own message does not reach the logs through the traceback either."""
    facts = _ARROW_FACTS.findall(str(error))
    return f" ({': '.join(facts)})" if facts else ""


def _detect_schema(source: str, names: list[str]) -> tuple[str, str, str]:
    found = [s for s, (pickup, dropoff) in SCHEMAS.items() if pickup in names and dropoff in names]
    if not found:
        expected = " or ".join(f"{p}/{d}" for p, d in SCHEMAS.values())
        # The header is not repeated: the file may be anything (a run pointed at /etc/passwd).
        problem = f"no {expected} columns ({len(names)} column(s) found)"
        raise DataError(source, f"not a TLC yellow or green trip file: {problem}")
    schema = found[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        problem = f"required column(s) {missing} missing from this {schema} trip file"
        raise DataError(source, problem)
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


def _check_coercion(
    source: str,
    column: str,
    before: pd.Series,
    after: pd.Series,
    kind: str,
) -> None:
    blank = before.isna() | (before.astype("string").str.strip() == "")
    bad = after.isna() & ~blank
    if bad.any():
        # Where, not what: the values themselves are the file's content.
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        count = f"{int(bad.sum())} value(s) that are not {kind}"
        raise DataError(source, f"column {column!r} has {count}, the first in trip row {first}")
