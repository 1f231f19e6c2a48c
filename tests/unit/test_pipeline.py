"""taxi.pipeline: the training entrypoints (one file, a window of months in bounded memory)
and inference of a file or of trips in memory, against fits on all months at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taxi import evaluate_model, run_training
from taxi.features import OneHotVectorizer
from taxi.model import OneHotNormalEquations, SparseLinearRegression
from taxi.pipeline import predict_trips, run_inference, run_window_training
from taxi.sources import load_data
from taxi.steps import compute_target, encode_categorical_columns, extract_x_y, filter_outliers
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR, YELLOW_FEB, YELLOW_JAN


def _kept_trips(path) -> pd.DataFrame:
    return encode_categorical_columns(filter_outliers(compute_target(load_data(str(path)))))


@pytest.fixture(scope="module")
def months() -> list[pd.DataFrame]:
    return [_kept_trips(path) for path in (GREEN_JAN, GREEN_FEB, GREEN_MAR)]


def test_normal_equations_month_by_month_equal_one_fit_on_all_months(months):
    together = pd.concat(months, ignore_index=True)
    X, y, vectorizer = extract_x_y(together, OneHotVectorizer())
    expected = SparseLinearRegression().fit(X, y)

    accumulated = OneHotNormalEquations()
    for trips in months:
        accumulated.add(trips, trips["duration"].to_numpy())
    model, accumulated_vectorizer = accumulated.fit()

    assert list(accumulated_vectorizer.get_feature_names_out()) == list(
        vectorizer.get_feature_names_out()
    )
    scale = np.abs(expected.coef_).max()
    assert np.abs(model.coef_ - expected.coef_).max() / scale < 1e-9
    assert abs(model.intercept_ - expected.intercept_) / abs(expected.intercept_) < 1e-9
    assert accumulated.rmse(model) == pytest.approx(evaluate_model(expected, X, y), rel=1e-9)
    # The vectorizer it returns encodes new trips exactly as the one fitted on everything.
    assert (accumulated_vectorizer.transform(months[1]) != vectorizer.transform(months[1])).nnz == 0


def test_window_of_one_month_gives_the_course_figures():
    result = run_window_training([str(GREEN_JAN)], str(GREEN_FEB), "linear")
    assert round(result.rmse_train, 4) == 9.7371
    assert round(result.rmse_test, 4) == 10.4475
    assert result.rmse_test_course_baseline == result.rmse_test
    assert (result.rows_kept, result.test.rows_kept, result.rows_trained) == (
        73_908,
        61_921,
        73_908,
    )
    assert not result.sampled


def test_two_month_window_trains_on_both_months():
    result = run_window_training([str(GREEN_JAN), str(GREEN_FEB)], str(GREEN_MAR), "linear")
    assert [month.source for month in result.months] == [str(GREEN_JAN), str(GREEN_FEB)]
    assert result.rows_kept == result.rows_trained == 73_908 + 61_921
    single = run_window_training([str(GREEN_FEB)], str(GREEN_MAR), "linear")
    assert result.rmse_test != single.rmse_test


def test_gbm_window_trains_on_a_bounded_sample_across_months():
    result = run_window_training(
        [str(GREEN_JAN), str(GREEN_FEB)], str(GREEN_MAR), "gbm", max_train_rows=20_000
    )
    assert result.rows_trained == 20_000
    assert result.sampled
    assert result.rows_kept == 73_908 + 61_921
    assert result.rmse_test < 7.0  # the model-quality limit, even on a sample


def test_trips_in_memory_are_predicted_as_their_file():
    trained = run_window_training([str(GREEN_JAN)], str(GREEN_FEB))
    from_file = run_inference(str(GREEN_MAR), trained.model, trained.vectorizer)
    in_memory = predict_trips(load_data(str(GREEN_MAR)), trained.model, trained.vectorizer)
    pd.testing.assert_frame_equal(in_memory.predictions, from_file)
    assert len(in_memory.predicted_minutes) == in_memory.processed.rows_read == len(from_file)


def test_training_and_inference_entrypoints():
    result = run_training(str(GREEN_JAN), str(GREEN_FEB))
    assert (round(result.rmse_train, 4), round(result.rmse_test, 4)) == (9.7371, 10.4475)
    predictions = run_inference(str(GREEN_MAR), result.model, result.vectorizer)
    assert len(predictions) == 83_827
    assert list(predictions.columns) == [
        "pickup_datetime",
        "PULocationID",
        "DOLocationID",
        "predicted_duration",
    ]
    raw = pd.read_parquet(GREEN_MAR)
    assert (
        predictions["pickup_datetime"].to_numpy() == raw["lpep_pickup_datetime"].to_numpy()
    ).all()
    assert predictions["predicted_duration"].notna().all()


def test_yellow_training_on_csv_months():
    result = run_training(str(YELLOW_JAN), str(YELLOW_FEB))
    assert result.train.rows_read == 28_401 and result.test.rows_read == 999
    assert 3 < result.rmse_train < result.rmse_test < 15
