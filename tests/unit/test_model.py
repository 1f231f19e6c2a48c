"""The vectorizer and the model against the course implementation, on real green data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression

from taxi import (
    evaluate_model,
    predict,
    process_train_data,
    train_model,
)
from taxi.features import OneHotVectorizer
from taxi.model import SparseLinearRegression
from tests.paths import GREEN_FEB, GREEN_JAN

CATEGORICAL = ["PULocationID", "DOLocationID", "passenger_count"]


@pytest.fixture(scope="module")
def green():
    train = process_train_data(str(GREEN_JAN))
    test = process_train_data(str(GREEN_FEB), train.vectorizer)
    return train, test


def _course_dicts(trips: pd.DataFrame) -> list[dict]:
    return trips[CATEGORICAL].astype(str).to_dict(orient="records")


def test_vectorizer_builds_the_dictvectorizer_matrix(green):
    train, test = green
    dv = DictVectorizer()
    expected_train = dv.fit_transform(_course_dicts(train.trips))
    expected_test = dv.transform(_course_dicts(test.trips))
    # Same columns, possibly in another order: align by feature name.
    order = [
        list(dv.feature_names_).index(name) for name in train.vectorizer.get_feature_names_out()
    ]
    assert sorted(order) == list(range(len(dv.feature_names_)))
    assert (train.X != expected_train[:, order]).nnz == 0
    assert (test.X != expected_test[:, order]).nnz == 0


def test_vectorizer_ignores_and_counts_unseen_values():
    trips = pd.DataFrame(
        {"PULocationID": [1, 2, 3], "DOLocationID": [7, 7, 8], "passenger_count": [1, -1, 1]}
    )
    vectorizer = OneHotVectorizer().fit(trips)
    unseen = pd.DataFrame(
        {"PULocationID": [2, 999], "DOLocationID": [500, 8], "passenger_count": [1, 1]}
    )
    X = vectorizer.transform(unseen)
    names = list(vectorizer.get_feature_names_out())
    assert X.toarray().tolist() == [
        [1.0 if n in ("PULocationID=2", "passenger_count=1") else 0.0 for n in names],
        [1.0 if n in ("DOLocationID=8", "passenger_count=1") else 0.0 for n in names],
    ]
    assert vectorizer.unknown_counts(unseen) == {
        "PULocationID": 1,
        "DOLocationID": 1,
        "passenger_count": 0,
    }


def test_model_reproduces_course_rmse(green):
    train, test = green
    model = train_model(train.X, train.y)
    assert isinstance(model, LinearRegression)
    assert round(evaluate_model(model, train.X, train.y), 4) == 9.7371
    assert round(evaluate_model(model, test.X, test.y), 4) == 10.4475


def test_model_matches_sklearn_linear_regression_exactly(green):
    """The exact solver gives scikit-learn's (dense, exact) least-squares predictions."""
    train, test = green
    rows = np.random.default_rng(0).choice(train.X.shape[0], 20_000, replace=False)
    X, y = train.X[rows], train.y[rows]
    ours = SparseLinearRegression().fit(X, y)
    reference = LinearRegression().fit(X.toarray(), y)
    assert np.allclose(ours.predict(test.X), reference.predict(test.X.toarray()), atol=1e-6)


def test_model_on_a_general_sparse_matrix():
    """Not one-hot: falls back to the general Gram matrix and still solves least squares."""
    rng = np.random.default_rng(1)
    X = sp.random(500, 20, density=0.3, random_state=2, format="csr")
    y = X @ rng.normal(size=20) + 3.0 + rng.normal(scale=0.01, size=500)
    ours = SparseLinearRegression().fit(X, y)
    reference = LinearRegression().fit(X.toarray(), y)
    assert np.allclose(ours.coef_, reference.coef_, atol=1e-8)
    assert ours.intercept_ == pytest.approx(reference.intercept_)


def test_predict_returns_minutes_per_row(green):
    train, test = green
    model = train_model(train.X, train.y)
    predicted = predict(model, test.X)
    assert predicted.shape == (61_921,) and predicted.dtype == np.float64
    assert 5 < predicted.mean() < 25


def test_model_is_minimum_norm_when_categories_always_occur_together():
    """Zone 5 only ever goes to zone 6 (and zone 6 only comes from 5): their columns are equal,
    which leaves one more direction undetermined than the one-hot groups do. Predictions for
    unseen combinations then depend on picking the minimum-norm solution, as scikit-learn does,
    however large the month."""
    rng = np.random.default_rng(3)
    n = 400_000
    trips = pd.DataFrame(
        {
            "PULocationID": rng.integers(10, 60, n),
            "DOLocationID": rng.integers(10, 60, n),
            "passenger_count": rng.integers(0, 6, n),
        }
    )
    trips.loc[:99, ["PULocationID", "DOLocationID"]] = [5, 6]
    y = 5 + trips["PULocationID"] * 0.2 + rng.normal(0, 3, n)
    vectorizer = OneHotVectorizer().fit(trips)
    X = vectorizer.transform(trips)
    ours = SparseLinearRegression().fit(X, y)
    reference = LinearRegression().fit(X.toarray(), y)
    unseen_pairs = pd.DataFrame(
        {"PULocationID": [5, 20, 700], "DOLocationID": [30, 6, 6], "passenger_count": [1, 2, 3]}
    )
    X_new = vectorizer.transform(unseen_pairs)
    assert np.allclose(ours.predict(X_new), reference.predict(X_new.toarray()), atol=1e-6)
    assert ours.rank_ == X.shape[1] - 4
