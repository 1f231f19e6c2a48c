"""Training on several months in bounded memory, against a fit on all of them at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taxi import evaluate_model
from taxi.features import OneHotVectorizer
from taxi.model import OneHotNormalEquations, SparseLinearRegression
from taxi.pipeline import predict_trips, run_inference, run_window_training
from taxi.sampling import UniformRowSample
from taxi.sources import load_data
from taxi.steps import compute_target, encode_categorical_columns, extract_x_y, filter_outliers
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR


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


def test_uniform_sample_is_bounded_uniform_across_batches_and_repeatable():
    batches = [
        pd.DataFrame({"batch": b, "row": np.arange(n)}) for b, n in enumerate((1_000, 3_000, 6_000))
    ]

    def draw(seed: int) -> pd.DataFrame:
        sample = UniformRowSample(2_000, seed=seed)
        for batch in batches:
            sample.add(batch)
        assert sample.rows_seen == 10_000 and sample.sampled
        return sample.rows

    rows = draw(7)
    assert len(rows) == 2_000
    assert not rows.duplicated().any()
    # In the order added: batch by batch, rows ascending within each.
    assert rows.sort_values(["batch", "row"]).index.tolist() == rows.index.tolist()
    shares = rows["batch"].value_counts(normalize=True).sort_index().to_numpy()
    assert np.allclose(shares, [0.1, 0.3, 0.6], atol=0.04)
    pd.testing.assert_frame_equal(rows, draw(7))
    assert not rows.equals(draw(8))


def test_uniform_sample_keeps_everything_below_its_size():
    sample = UniformRowSample(100)
    sample.add(pd.DataFrame({"x": range(30)}))
    sample.add(pd.DataFrame({"x": range(30, 60)}))
    assert sample.rows["x"].tolist() == list(range(60))
    assert not sample.sampled
    with pytest.raises(ValueError, match="at least 1"):
        UniformRowSample(0)


def test_trips_in_memory_are_predicted_as_their_file():
    trained = run_window_training([str(GREEN_JAN)], str(GREEN_FEB))
    from_file = run_inference(str(GREEN_MAR), trained.model, trained.vectorizer)
    in_memory = predict_trips(load_data(str(GREEN_MAR)), trained.model, trained.vectorizer)
    pd.testing.assert_frame_equal(in_memory.predictions, from_file)
    assert len(in_memory.predicted_minutes) == in_memory.processed.rows_read == len(from_file)
