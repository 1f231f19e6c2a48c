"""The gradient-boosting model (taxi.gbm) and its trip features, trained on real green months."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from taxi import evaluate_model, process_train_data, run_training
from taxi.features import TripFeatureEncoder
from taxi.gbm import GbmRegressor
from taxi.model import make_vectorizer
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR


@pytest.fixture(scope="module", params=[False, True], ids=["zones-and-time", "with-distance"])
def gbm(request):
    return request.param, run_training(
        str(GREEN_JAN), str(GREEN_FEB), "gbm", use_trip_distance=request.param
    )


def test_gbm_beats_the_course_by_far(gbm):
    use_distance, result = gbm
    limit = 5.4 if use_distance else 7.0
    assert result.rmse_test <= limit, (
        f"gbm (distance={use_distance}) test RMSE {result.rmse_test:.4f} > {limit}"
    )
    assert result.test.rows_kept == 61_921


def test_gbm_round_trips_through_pickle_and_predicts_another_month(gbm):
    use_distance, result = gbm
    model, vectorizer = pickle.loads(pickle.dumps((result.model, result.vectorizer)))
    march = process_train_data(str(GREEN_MAR), vectorizer)
    assert evaluate_model(model, march.X, march.y) <= (5.4 if use_distance else 7.0)
    assert ("dist" in vectorizer.get_feature_names_out()) == use_distance


def test_gbm_uses_only_request_time_inputs(gbm):
    """Dropoff time, passenger count and (without the flag) the ride's distance must not
    change a prediction."""
    use_distance, result = gbm
    trips = result.test.trips.head(500)
    altered = trips.assign(
        dropoff_datetime=trips["dropoff_datetime"] + pd.Timedelta(hours=3),
        passenger_count=7,
        duration=0.0,
        trip_distance=trips["trip_distance"] if use_distance else trips["trip_distance"] * 5 + 1,
    )
    assert np.array_equal(
        result.model.predict(result.vectorizer.transform(trips)),
        result.model.predict(result.vectorizer.transform(altered)),
    )


def test_gbm_predicts_unknown_zones_and_counts_them(gbm):
    _, result = gbm
    trips = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2021-02-01 08:00"] * 4),
            "PULocationID": [-1, 999, 74, 264],
            "DOLocationID": [75, 1, 999, -1],
            "trip_distance": [np.nan, 2.0, -5.0, 1e6],
        }
    )
    predicted = result.model.predict(result.vectorizer.transform(trips))
    assert np.isfinite(predicted).all() and ((predicted > 1) & (predicted < 60)).all()
    assert result.vectorizer.unknown_counts(trips) == {"PULocationID": 2, "DOLocationID": 2}


def test_target_encodings_are_cross_fitted_on_training_rows():
    train = process_train_data(str(GREEN_JAN))  # processed trips with their durations
    encoder = TripFeatureEncoder()
    out_of_fold = encoder.fit_transform(train.trips, train.y)
    in_sample = encoder.transform(train.trips)
    column = list(encoder.get_feature_names_out()).index("te_pair")
    assert not np.allclose(out_of_fold[:, column], in_sample[:, column])
    assert np.array_equal(encoder.fit_transform(train.trips, train.y), out_of_fold)  # deterministic


def test_use_trip_distance_is_for_gbm_only():
    with pytest.raises(ValueError, match="model_type='gbm' only"):
        make_vectorizer("linear", use_trip_distance=True)
    with pytest.raises(ValueError, match="model_type must be one of"):
        make_vectorizer("forest")


def test_gbm_model_is_xgboost_and_its_pickle_predicts_the_same(gbm):
    _, result = gbm
    model, vectorizer = pickle.loads(pickle.dumps((result.model, result.vectorizer)))
    assert (
        isinstance(model, GbmRegressor) and model.n_fit_rows_ == result.train.rows_kept
    )  # a 74k-trip month is used whole
    assert np.array_equal(model.predict(result.test.X), result.model.predict(result.test.X))
    assert np.array_equal(
        vectorizer.transform(result.test.trips), result.test.X, equal_nan=True
    )  # NaN: no usable distance


def test_gbm_model_of_another_format_refuses_to_load():
    state = GbmRegressor().__getstate__() | {"format": "sklearn-hgb"}
    with pytest.raises(ValueError, match="format 'sklearn-hgb'.*retrain"):
        GbmRegressor.__new__(GbmRegressor).__setstate__(state)


def test_gbm_fits_its_trees_on_a_sample_of_a_large_month():
    train = process_train_data(str(GREEN_JAN), make_vectorizer("gbm"))
    model = GbmRegressor(n_trees=20, max_fit_rows=10_000).fit(train.X, train.y)
    assert model.n_fit_rows_ == 10_000
    assert (
        evaluate_model(model, train.X, train.y) < 9.0
    )  # the trees still learned something on every row


def test_trip_features_are_float32_and_time_fields_match_pandas():
    train = process_train_data(str(GREEN_JAN), make_vectorizer("gbm"))
    names = list(train.vectorizer.get_feature_names_out())
    assert train.X.dtype == np.float32 and train.X.shape == (73_908, len(names))
    pickup = train.trips["pickup_datetime"]
    quarter_hour = pickup.dt.hour + (pickup.dt.minute // 15) / 4.0
    assert np.array_equal(train.X[:, names.index("hour")], quarter_hour.to_numpy(dtype=np.float32))
    assert np.array_equal(
        train.X[:, names.index("hour_block")], (pickup.dt.hour // 4).to_numpy(dtype=np.float32)
    )
    assert np.array_equal(
        train.X[:, names.index("dow")], pickup.dt.day_of_week.to_numpy(dtype=np.float32)
    )
    trips = pd.DataFrame(
        {
            "pickup_datetime": [pd.NaT, pd.Timestamp("2021-02-07 23:59")],
            "PULocationID": [74, 74],
            "DOLocationID": [75, 75],
        }
    )
    features = train.vectorizer.transform(trips)
    assert np.isnan(features[0, names.index("hour")]) and np.isnan(features[0, names.index("dow")])
    assert features[1, names.index("dow")] == 6 and features[1, names.index("hour")] == 23.75
    assert (
        np.isnan(features[0, names.index("hour_block")])
        and features[1, names.index("hour_block")] == 5
    )
