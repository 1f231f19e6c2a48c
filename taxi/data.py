"""Reading TLC trip files and turning them into model-ready data.

`load_data` reads yellow (`tpep_*`) and green (`lpep_*`) trip records, parquet or CSV, from a
local path, an `s3://bucket/key` URI or an `https://` URL, checks them against the input
contract and returns them with schema-neutral column names (`pickup_datetime`,
`dropoff_datetime`). Only the columns the pipeline uses are read, which keeps a 1.4M-trip
month to a few tens of megabytes.
"""

from __future__ import annotations

import ctypes
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from taxi.config import (
    CATEGORICAL_COLUMNS,
    MAX_DURATION_MINUTES,
    MIN_DURATION_MINUTES,
    MISSING_CATEGORY,
    TARGET_COLUMN,
)
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from taxi.features import OneHotVectorizer

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


def _return_freed_memory_to_the_os() -> None:
    """A month is a handful of ~10 MB column arrays that are replaced step after step. By
    default glibc raises its mmap threshold after such frees and keeps later arrays in a heap
    it does not shrink, and Arrow's mimalloc pool keeps what it freed: together ~70 MB of dead
    memory per 1.4M-trip month (measured by benchmarks/benchmark.py). A fixed threshold and
    Arrow's system pool hand freed arrays back at once. Both are process-wide, and harmless
    for what else runs in a pipeline worker."""
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB, glibc's default
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_return_freed_memory_to_the_os()


class DataError(ValueError):
    """Input data that cannot be used; the message names the source and the problem.

    Not worth retrying: the same input will fail the same way."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


# --- loading -------------------------------------------------------------------------------


def load_data(source: str) -> pd.DataFrame:
    """Read one TLC trip file and return its trips in file order.

    Columns: pickup_datetime, dropoff_datetime (datetime64), PULocationID, DOLocationID,
    passenger_count, trip_distance (float64, NaN where missing). `attrs` records the source
    and the TLC schema ("yellow" or "green").
    """
    raw = _open(source)
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


def _open(source: str) -> Any:
    """A local path as is; remote sources as an in-memory buffer (a month is tens of MB)."""
    if source.startswith("s3://"):
        from taxi.storage import ArtifactStore, StorageError, StoreConfig, parse_s3_uri

        bucket, key = parse_s3_uri(source)
        try:
            return pa.py_buffer(ArtifactStore(config=StoreConfig(bucket=bucket)).get(key))
        except StorageError as error:
            if "does not exist" in str(error):
                raise DataError(source, "file not found in S3") from error
            raise
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


def _suffix(source: str) -> str:
    return source.split("?", 1)[0].lower()


def _is_parquet(source: str, raw: Any) -> bool:
    name = _suffix(source)
    if name.endswith((".parquet", ".pq")):
        return True
    if name.endswith((".csv", ".csv.gz")):
        return False
    head = raw.to_pybytes()[:4] if isinstance(raw, pa.Buffer) else open(raw, "rb").read(4)
    return head == b"PAR1"


def _parquet_columns(source: str, raw: Any) -> list[str]:
    try:
        return list(pq.read_schema(_reader(raw)).names)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"not a readable parquet file ({error})") from error


def _read_parquet(source: str, raw: Any, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(_reader(raw), columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"parquet file is corrupt or truncated ({error})") from error


def _csv_stream(source: str, raw: Any) -> Any:
    stream = _reader(raw)
    if _suffix(source).endswith(".gz"):
        stream = pa.CompressedInputStream(stream, "gzip")
    return stream


def _csv_columns(source: str, raw: Any) -> list[str]:
    try:
        reader = pacsv.open_csv(_csv_stream(source, raw), read_options=pacsv.ReadOptions(block_size=1 << 16))
        return list(reader.schema.names)
    except (pa.ArrowException, OSError) as error:
        if "Empty CSV file" in str(error):
            raise DataError(source, "file is empty") from error
        raise DataError(source, f"not a readable CSV file ({error})") from error


def _read_csv(source: str, raw: Any, columns: list[str]) -> pa.Table:
    # Everything as text first: type problems are reported per column in _coerce_types.
    options = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
    try:
        return pacsv.read_csv(_csv_stream(source, raw), convert_options=options)
    except (pa.ArrowException, OSError) as error:
        raise DataError(source, f"not a readable CSV file ({error})") from error


def _reader(raw: Any) -> Any:
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


# --- processing steps ------------------------------------------------------------------------


def compute_target(trips: pd.DataFrame) -> pd.DataFrame:
    """Add the target: trip duration in minutes (dropoff minus pickup)."""
    duration = (trips[DROPOFF] - trips[PICKUP]).dt.total_seconds() / 60
    return trips.assign(**{TARGET_COLUMN: duration.astype(np.float64)})


def filter_outliers(
    trips: pd.DataFrame, min_minutes: float = MIN_DURATION_MINUTES, max_minutes: float = MAX_DURATION_MINUTES
) -> pd.DataFrame:
    """Keep trips with min_minutes <= duration <= max_minutes (both inclusive)."""
    duration = trips[TARGET_COLUMN]
    return trips.loc[(duration >= min_minutes) & (duration <= max_minutes)]


def encode_categorical_columns(trips: pd.DataFrame, columns: tuple[str, ...] = CATEGORICAL_COLUMNS) -> pd.DataFrame:
    """Category columns as integers, missing values as -1 (the course's fillna(-1).astype(int))."""
    encoded = {}
    for column in columns:
        values = trips[column]
        if pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
            encoded[column] = values.to_numpy(dtype=np.int64)
            continue
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        # NaN and inf both mean "unknown"; truncating other floats matches astype(int).
        encoded[column] = np.where(np.isfinite(values), values, MISSING_CATEGORY).astype(np.int64)
    return trips.assign(**encoded)


def extract_x_y(trips: pd.DataFrame, vectorizer: Any = None) -> tuple[Any, np.ndarray | None, Any]:
    """Feature matrix, target (None when the trips have none) and the vectorizer.

    A fitted vectorizer only transforms. An unfitted one (or None, meaning the course's
    one-hot encoding) is fitted on these trips with `fit_transform`, which lets a vectorizer
    whose features depend on the target encode its own training rows out of fold.
    """
    y = trips[TARGET_COLUMN].to_numpy(dtype=np.float64) if TARGET_COLUMN in trips else None
    if vectorizer is None:
        vectorizer = OneHotVectorizer()
    if _is_fitted(vectorizer):
        return vectorizer.transform(trips), y, vectorizer
    if y is None:
        raise ValueError("fitting a vectorizer needs trips with a target: use process_train_data")
    return vectorizer.fit_transform(trips, y), y, vectorizer


def _is_fitted(estimator: Any) -> bool:
    try:
        check_is_fitted(estimator)
        return True
    except NotFittedError:
        return False


@dataclass
class ProcessedData:
    """Model-ready data and what it took to get it."""

    X: Any  # noqa: N815 (the usual name for a feature matrix)
    y: np.ndarray | None
    vectorizer: Any
    trips: pd.DataFrame  # the rows behind X, with encoded categories
    source: str
    rows_read: int

    @property
    def rows_kept(self) -> int:
        return len(self.trips)

    @property
    def rows_filtered(self) -> int:
        return self.rows_read - self.rows_kept


def ensure_trips_left(kept: pd.DataFrame, rows_read: int, source: str) -> None:
    """Training on nothing is an input problem, not a modelling one: say so by name."""
    if kept.empty:
        raise DataError(
            source,
            f"no trips left after keeping durations of {MIN_DURATION_MINUTES:g}-{MAX_DURATION_MINUTES:g} minutes "
            f"({rows_read} read)",
        )


def process_train_data(source: str, vectorizer: Any = None) -> ProcessedData:
    """Every step for data with a known outcome: load, target, outlier filter, encode, features.

    With no vectorizer or an unfitted one, it is fitted here (see extract_x_y)."""
    trips = load_data(source)
    rows_read = len(trips)
    # Rebinding one name lets each intermediate frame go as soon as the next exists.
    trips = filter_outliers(compute_target(trips))
    ensure_trips_left(trips, rows_read, source)
    trips = encode_categorical_columns(trips)
    X, y, vectorizer = extract_x_y(trips, vectorizer)
    return ProcessedData(X, y, vectorizer, trips, source, rows_read)


def process_inference_data(source: str, vectorizer: Any) -> ProcessedData:
    """Steps for data to predict: load, encode, features. No target and no filter: every
    input trip gets a prediction, in input order."""
    trips = encode_categorical_columns(load_data(source))
    X, _, vectorizer = extract_x_y(trips.drop(columns=[TARGET_COLUMN], errors="ignore"), vectorizer)
    return ProcessedData(X, None, vectorizer, trips, source, len(trips))
