"""The ML steps on real TLC files (taxi.steps): target, outliers, encoding, features, and the
processing of a training or inference file; no servers needed."""

from __future__ import annotations

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
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR


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


def test_nothing_left_after_filtering(tmp_path):
    table = pq.read_table(GREEN_JAN).slice(0, 200).to_pandas()
    table["lpep_dropoff_datetime"] = table["lpep_pickup_datetime"]  # every trip lasts 0 minutes
    table.to_parquet(tmp_path / "zero.parquet")
    with pytest.raises(
        DataError, match="no trips left after keeping durations of 1-60 minutes \\(200 read\\)"
    ):
        process_train_data(str(tmp_path / "zero.parquet"))
