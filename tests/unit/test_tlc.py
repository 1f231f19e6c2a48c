"""Reading TLC files and their input contract (taxi.tlc), through `taxi.load_data` on local
files and through an opener of the test's own; no servers needed."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from taxi import DataError, load_data
from taxi.tlc import read_trips
from tests.paths import DATA, GREEN_FEB, GREEN_JAN, YELLOW_JAN

COLUMNS = [
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
]


def test_load_green_parquet_keeps_every_trip_in_order():
    trips = load_data(str(GREEN_JAN))
    raw = pq.read_table(GREEN_JAN).to_pandas()
    assert list(trips.columns) == COLUMNS
    assert len(trips) == 76_518 == len(raw)
    assert trips.attrs["schema"] == "green"
    assert (trips["pickup_datetime"].to_numpy() == raw["lpep_pickup_datetime"].to_numpy()).all()
    assert np.array_equal(
        trips["PULocationID"].to_numpy(), raw["PULocationID"].to_numpy(dtype=float)
    )
    assert pd.api.types.is_datetime64_any_dtype(trips["dropoff_datetime"])


def test_load_yellow_csv():
    trips = load_data(str(YELLOW_JAN))
    assert len(trips) == 28_401
    assert trips.attrs["schema"] == "yellow"
    raw = pd.read_csv(YELLOW_JAN)
    assert (trips["pickup_datetime"] == pd.to_datetime(raw["tpep_pickup_datetime"])).all()
    assert np.array_equal(
        trips["passenger_count"].to_numpy(),
        raw["passenger_count"].to_numpy(dtype=float),
        equal_nan=True,
    )


def test_load_gzipped_csv_and_parquet_without_extension(tmp_path):
    gz = tmp_path / "yellow.csv.gz"
    gz.write_bytes(gzip.compress(YELLOW_JAN.read_bytes()))
    assert len(load_data(str(gz))) == 28_401
    bare = tmp_path / "green-month"
    shutil.copy(GREEN_FEB, bare)
    assert len(load_data(str(bare))) == 64_572


def test_read_trips_reads_the_file_its_opener_gives(tmp_path):
    """taxi.tlc knows nothing of where a file comes from: it reads the local file its opener
    gives, and takes the format from the source's name (a copy's local name says nothing)."""
    source = "s3://bucket/yellow_tripdata_2021-01.csv"
    copy = tmp_path / "copy"
    shutil.copy(YELLOW_JAN, copy)
    opened: list[str] = []

    @contextmanager
    def opener(name: str) -> Iterator[str]:
        opened.append(name)
        yield str(copy)

    trips = read_trips(source, opener)
    assert opened == [source]
    assert len(trips) == 28_401 and trips.attrs == {"source": source, "schema": "yellow"}
    with pytest.raises(DataError, match=r"^s3://bucket/x\.parquet: not a readable parquet file"):
        read_trips("s3://bucket/x.parquet", opener)  # CSV bytes under a parquet name


# --- the input contract: bad input fails with the source and the problem named --------------


def _fails(source, match):
    with pytest.raises(DataError, match=match) as error:
        load_data(str(source))
    assert str(source) in str(error.value)
    return error.value


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.parquet", "file not found")


def test_truncated_parquet(tmp_path):
    path = tmp_path / "truncated.parquet"
    path.write_bytes(GREEN_JAN.read_bytes()[:600_000])
    _fails(path, "parquet")


def test_garbage_with_parquet_extension(tmp_path):
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"this is not parquet at all")
    _fails(path, "not a readable parquet file")


def test_empty_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    _fails(tmp_path / "empty.csv", "empty")
    header_only = tmp_path / "header.csv"
    header_only.write_text(YELLOW_JAN.read_text().splitlines()[0] + "\n")
    _fails(header_only, "contains no trips")
    empty_parquet = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(GREEN_JAN).slice(0, 0), empty_parquet)
    _fails(empty_parquet, "contains no trips")


def test_non_tlc_table(tmp_path):
    _fails(DATA / "taxi_zone_lookup.csv", "not a TLC yellow or green trip file")


def test_renamed_column(tmp_path):
    table = pq.read_table(GREEN_JAN)
    renamed = table.rename_columns(
        [("PULocation" if c == "PULocationID" else c) for c in table.column_names]
    )
    pq.write_table(renamed, tmp_path / "renamed.parquet")
    _fails(tmp_path / "renamed.parquet", r"required column\(s\) \['PULocationID'\] missing")


def test_unparseable_values(tmp_path):
    lines = YELLOW_JAN.read_text().splitlines()[:50]
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("tpep_pickup_datetime")] = "yesterday"
    (tmp_path / "bad_time.csv").write_text("\n".join([lines[0], *lines[1:5], ",".join(row)]) + "\n")
    error = _fails(
        tmp_path / "bad_time.csv",
        "'pickup_datetime' has 1 value.* not datetimes, the first in trip row 5$",
    )
    assert "yesterday" not in str(error)  # where, not what: values are the file's content
    row = lines[5].split(",")
    row[header.index("DOLocationID")] = "Queens"
    (tmp_path / "bad_zone.csv").write_text("\n".join([lines[0], *lines[1:5], ",".join(row)]) + "\n")
    error = _fails(
        tmp_path / "bad_zone.csv",
        "'DOLocationID' has 1 value.* not numbers, the first in trip row 5$",
    )
    assert "Queens" not in str(error)


def test_errors_name_the_source_and_the_problem_never_the_content(tmp_path):
    """A run pointed at a file that is not trip data gets an error without the file's bytes:
    not in the message, nor in the exception chain that tracebacks in the logs would show."""
    secret = "root:x:0:0:SECRET-token-1234:/root:/bin/bash"
    passwd = tmp_path / "passwd"
    passwd.write_text(
        f"{secret}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nodd,line,with,commas\n"
    )
    one_line = tmp_path / "environ"
    one_line.write_bytes(b"AWS_SECRET_ACCESS_KEY=SECRET-token-1234\x00HOME=/root,x\x00")
    header_only = tmp_path / "header.csv"
    header_only.write_text("SECRET-token-1234,other\n1,2\n")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,b\n"SECRET-token-1234\n')
    for path, problem in (
        (passwd, r"not a readable CSV file \(Row #3: Expected 1 columns, got 4\)"),
        (one_line, "file is empty|not a TLC yellow or green trip file"),
        (header_only, r"not a TLC yellow or green trip file: .* \(2 column\(s\) found\)"),
        (quoted, "not a readable CSV file"),
    ):
        error = _fails(path, problem)
        chain = [error, error.__cause__, None if error.__suppress_context__ else error.__context__]
        assert not any("SECRET" in str(e) for e in chain if e is not None), (path, chain)
    for path in ("/etc/passwd", "/proc/self/environ"):  # the real ones, where this machine has them
        if os.path.isfile(path):
            with pytest.raises(DataError) as raised:
                load_data(path)
            assert str(raised.value).startswith(f"{path}: ") and "root:" not in str(raised.value)
            assert raised.value.__cause__ is None and raised.value.__suppress_context__
