"""Loading and processing real TLC files (no servers needed except where named)."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import threading
from functools import partial

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from taxi import (
    DataError,
    compute_target,
    encode_categorical_columns,
    extract_x_y,
    filter_outliers,
    load_data,
    process_inference_data,
    process_train_data,
)
from taxi.features import OneHotVectorizer
from tests.paths import DATA, GREEN_FEB, GREEN_JAN, GREEN_MAR, YELLOW_JAN

COLUMNS = ["pickup_datetime", "dropoff_datetime", "PULocationID", "DOLocationID", "passenger_count", "trip_distance"]


def test_load_green_parquet_keeps_every_trip_in_order():
    trips = load_data(str(GREEN_JAN))
    raw = pq.read_table(GREEN_JAN).to_pandas()
    assert list(trips.columns) == COLUMNS
    assert len(trips) == 76_518 == len(raw)
    assert trips.attrs["schema"] == "green"
    assert (trips["pickup_datetime"].to_numpy() == raw["lpep_pickup_datetime"].to_numpy()).all()
    assert np.array_equal(trips["PULocationID"].to_numpy(), raw["PULocationID"].to_numpy(dtype=float))
    assert pd.api.types.is_datetime64_any_dtype(trips["dropoff_datetime"])


def test_load_yellow_csv():
    trips = load_data(str(YELLOW_JAN))
    assert len(trips) == 28_401
    assert trips.attrs["schema"] == "yellow"
    raw = pd.read_csv(YELLOW_JAN)
    assert (trips["pickup_datetime"] == pd.to_datetime(raw["tpep_pickup_datetime"])).all()
    assert np.array_equal(trips["passenger_count"].to_numpy(), raw["passenger_count"].to_numpy(dtype=float), equal_nan=True)


def test_load_gzipped_csv_and_parquet_without_extension(tmp_path):
    gz = tmp_path / "yellow.csv.gz"
    gz.write_bytes(gzip.compress(YELLOW_JAN.read_bytes()))
    assert len(load_data(str(gz))) == 28_401
    bare = tmp_path / "green-month"
    shutil.copy(GREEN_FEB, bare)
    assert len(load_data(str(bare))) == 64_572


def test_load_over_https_scheme_handler(tmp_path):
    """load_data downloads over HTTP(S); served here by a local HTTP server."""
    shutil.copy(GREEN_MAR, tmp_path / "green_tripdata_2021-03.parquet")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        trips = load_data(f"{base}/green_tripdata_2021-03.parquet")
        assert len(trips) == 83_827
        with pytest.raises(DataError, match="HTTP 404"):
            load_data(f"{base}/green_tripdata_2099-01.parquet")
    finally:
        server.shutdown()


def test_compute_target_is_minutes_between_pickup_and_dropoff():
    trips = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2021-01-01 10:00:00", "2021-01-01 10:00:00"]),
            "dropoff_datetime": pd.to_datetime(["2021-01-01 10:30:30", "2021-01-01 09:59:00"]),
        }
    )
    assert compute_target(trips)["duration"].tolist() == [30.5, -1.0]
    assert "duration" not in trips  # the input is not modified


def test_filter_outliers_keeps_both_bounds():
    trips = pd.DataFrame({"duration": [0.99, 1.0, 30.0, 60.0, 60.01, -5.0, np.nan]})
    assert filter_outliers(trips)["duration"].tolist() == [1.0, 30.0, 60.0]


def test_encode_categorical_columns_matches_course_fillna_astype_int():
    trips = load_data(str(GREEN_JAN))  # has trips with no passenger count
    encoded = encode_categorical_columns(trips)
    for column in ("PULocationID", "DOLocationID", "passenger_count"):
        course = trips[column].fillna(-1).astype(int)
        assert encoded[column].tolist() == course.tolist()
    assert (encoded["passenger_count"] == -1).sum() == trips["passenger_count"].isna().sum() > 0


def test_extract_x_y_fits_then_reuses_the_vectorizer():
    train = encode_categorical_columns(compute_target(load_data(str(GREEN_JAN))))
    X, y, vectorizer = extract_x_y(train)
    assert isinstance(vectorizer, OneHotVectorizer)
    assert X.shape == (len(train), vectorizer.n_features_)
    assert np.array_equal(y, train["duration"].to_numpy())
    test = encode_categorical_columns(load_data(str(GREEN_FEB)))
    X_test, y_test, same = extract_x_y(test, vectorizer)
    assert same is vectorizer and y_test is None and X_test.shape[1] == X.shape[1]


def test_process_train_data_reproduces_course_row_counts():
    train = process_train_data(str(GREEN_JAN))
    assert (train.rows_read, train.rows_kept, train.rows_filtered) == (76_518, 73_908, 2_610)
    assert train.X.shape == (73_908, 514)  # the course's 514 one-hot features
    test = process_train_data(str(GREEN_FEB), train.vectorizer)
    assert test.rows_kept == 61_921 and test.X.shape[1] == 514
    assert ((test.y >= 1) & (test.y <= 60)).all()


def test_process_inference_data_keeps_every_trip_without_target():
    train = process_train_data(str(GREEN_JAN))
    processed = process_inference_data(str(GREEN_MAR), train.vectorizer)
    assert processed.y is None
    assert processed.X.shape == (83_827, 514)
    assert processed.rows_filtered == 0
    assert "duration" not in processed.trips


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
    renamed = table.rename_columns([("PULocation" if c == "PULocationID" else c) for c in table.column_names])
    pq.write_table(renamed, tmp_path / "renamed.parquet")
    _fails(tmp_path / "renamed.parquet", r"required column\(s\) \['PULocationID'\] missing")


def test_unparseable_values(tmp_path):
    lines = YELLOW_JAN.read_text().splitlines()[:50]
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("tpep_pickup_datetime")] = "yesterday"
    (tmp_path / "bad_time.csv").write_text("\n".join([lines[0], *lines[1:5], ",".join(row)]) + "\n")
    error = _fails(tmp_path / "bad_time.csv", "'pickup_datetime' has 1 value.* not datetimes, the first in trip row 5$")
    assert "yesterday" not in str(error)  # where, not what: values are the file's content
    row = lines[5].split(",")
    row[header.index("DOLocationID")] = "Queens"
    (tmp_path / "bad_zone.csv").write_text("\n".join([lines[0], *lines[1:5], ",".join(row)]) + "\n")
    error = _fails(tmp_path / "bad_zone.csv", "'DOLocationID' has 1 value.* not numbers, the first in trip row 5$")
    assert "Queens" not in str(error)


def test_errors_name_the_source_and_the_problem_never_the_content(tmp_path):
    """A run pointed at a file that is not trip data gets an error without the file's bytes:
    not in the message, nor in the exception chain that tracebacks in the logs would show."""
    secret = "root:x:0:0:SECRET-token-1234:/root:/bin/bash"
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{secret}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nodd,line,with,commas\n")
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


def test_nothing_left_after_filtering(tmp_path):
    table = pq.read_table(GREEN_JAN).slice(0, 200).to_pandas()
    table["lpep_dropoff_datetime"] = table["lpep_pickup_datetime"]  # every trip lasts 0 minutes
    table.to_parquet(tmp_path / "zero.parquet")
    with pytest.raises(DataError, match="no trips left after keeping durations of 1-60 minutes \\(200 read\\)"):
        process_train_data(str(tmp_path / "zero.parquet"))
