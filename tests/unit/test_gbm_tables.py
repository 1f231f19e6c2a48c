"""The gbm model's lookup tables (taxi.gbm_tables): exactly the trees' predictions, on real months."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from taxi import process_train_data, run_training
from taxi.gbm_tables import ForestTables
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR

# The trees add their leaves in float32, the tables in float64.
TOLERANCE = 1e-3


class CountingBooster:
    """The model's booster, counting the rows it walks through every tree."""

    def __init__(self, booster: xgb.Booster):
        self.booster, self.rows_walked = booster, 0

    def inplace_predict(self, X: np.ndarray) -> np.ndarray:
        self.rows_walked += len(X)
        return self.booster.inplace_predict(X)


@pytest.fixture(scope="module")
def trained():
    result = run_training(str(GREEN_JAN), str(GREEN_FEB), "gbm")
    return pickle.loads(pickle.dumps((result.model, result.vectorizer))) + (result,)


def walked_and_tabulated(model, X):
    counting = CountingBooster(model.booster_)
    tabulated = model.tables_.predict(counting, X)
    return (
        np.asarray(model.booster_.inplace_predict(X), dtype=np.float64),
        tabulated,
        counting.rows_walked,
    )


@pytest.mark.parametrize("month", [GREEN_FEB, GREEN_MAR], ids=["2021-02", "2021-03"])
def test_tables_predict_what_the_trees_predict_on_real_months(trained, month):
    model, vectorizer, _ = trained
    X = process_train_data(str(month), vectorizer).X
    walked, tabulated, rows_walked = walked_and_tabulated(model, X)
    assert np.abs(tabulated - walked).max() <= TOLERANCE
    # Only the spot check walked the full forest: every other row came from the tables.
    assert rows_walked <= 256 < len(X)


def test_the_model_is_tabulated_with_its_encoders_interaction_groups(trained):
    model, vectorizer, result = trained
    assert model.tables_ is not None and [g.name for g in model.tables_.groups] == [
        g.name for g in vectorizer.interaction_groups()
    ]
    # Filled at training for the encoder's grid, so a month predicts mostly from lookups.
    keys, _ = model.tables_.filled[0]
    assert len(keys) >= 13 * np.count_nonzero(vectorizer.tables_.pair_count)
    assert (
        model.fit_rmse_ == pytest.approx(result.rmse_train)
        and 0 < result.rmse_train < result.rmse_test
    )


def test_zone_pairs_never_seen_in_training_are_tabulated_when_first_met(trained):
    model, vectorizer, _ = trained
    pairs = np.arange(300 * 300)
    # Zones 100-263: past the first zone of each borough and service zone, which the grid uses.
    inside = (
        (pairs // 300 >= 100) & (pairs // 300 <= 263) & (pairs % 300 >= 100) & (pairs % 300 <= 263)
    )
    unseen = pairs[inside & (vectorizer.tables_.pair_count == 0)][::97][:50]
    pickup = pd.Series(pd.date_range("2021-02-01", periods=len(unseen), freq="37min"))
    pickup[::7] = pd.NaT  # a missing pickup time has its own key
    trips = pd.DataFrame(
        {"pickup_datetime": pickup, "PULocationID": unseen // 300, "DOLocationID": unseen % 300}
    )
    X = vectorizer.transform(trips)
    assert np.isnan(X[0, list(vectorizer.get_feature_names_out()).index("hour")])
    before = np.isnan(model.tables_._tables()[0][model.tables_.keys(X)[0][0]])
    assert before.all()
    walked, tabulated, _ = walked_and_tabulated(model, X)
    assert np.abs(tabulated - walked).max() <= TOLERANCE
    assert not np.isnan(model.tables_._tables()[0][model.tables_.keys(X)[0][0]]).any()


def test_rows_whose_keys_are_not_codes_are_walked_through_the_trees(trained):
    model, vectorizer, result = trained
    X = result.test.X[:1000].copy()
    names = list(vectorizer.get_feature_names_out())
    X[0, names.index("pu_id")] = 3.5
    X[1, names.index("hour")] = np.inf
    X[2, names.index("do_id")] = -1
    X[3, names.index("pair_length")] = 1e12
    X[4, names.index("dow")] = 7
    walked, tabulated, rows_walked = walked_and_tabulated(model, X)
    assert np.abs(tabulated - walked).max() <= TOLERANCE
    assert rows_walked >= 5


def test_features_that_break_the_encoders_keys_are_predicted_tree_by_tree(trained, caplog):
    """The cross-fitted training features differ between rows that share a key: the spot check
    sees it, nothing is kept in the tables, and every row is walked, exactly."""
    model, _, result = trained
    before = [table.copy() for table in model.tables_._tables()]
    with caplog.at_level(logging.WARNING, logger="taxi.gbm_tables"):
        walked, tabulated, rows_walked = walked_and_tabulated(model, result.train.X)
    assert np.abs(tabulated - walked).max() <= TOLERANCE and rows_walked > len(result.train.X)
    assert "predicting tree by tree" in caplog.text
    after = model.tables_._tables()
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after, strict=True))


def test_trees_that_cross_interaction_groups_cannot_be_tabulated(trained):
    model, vectorizer, result = trained
    names = [str(name) for name in vectorizer.get_feature_names_out()]
    X, y = result.train.X[:5000], result.train.y[:5000]
    unconstrained = xgb.train({"max_depth": 6, "seed": 0}, xgb.DMatrix(X, y), num_boost_round=20)
    with pytest.raises(ValueError, match="crosses interaction groups"):
        ForestTables(unconstrained, names, vectorizer.interaction_groups())


def test_encoders_pickled_before_tabular_features_keep_their_features(trained):
    _, vectorizer, result = trained
    old = pickle.loads(pickle.dumps(vectorizer))
    state = dict(old.__getstate__())
    for name in ("tabular", "length_edges_"):
        state.pop(name)
    state["feature_names_"] = np.array(
        [n for n in state["feature_names_"] if n not in ("hour_block", "pair_length")]
    )
    old.__dict__.clear()
    old.__setstate__(state)
    assert old.tabular is False and old.interaction_groups() is None
    X = old.transform(result.test.trips.head(100))
    assert (
        X.shape[1] == len(vectorizer.get_feature_names_out()) - 2
    )  # no hour_block, no pair_length
