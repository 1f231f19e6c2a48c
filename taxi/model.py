"""Training, evaluating and applying the trip-duration model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

from taxi.config import CATEGORICAL_COLUMNS
from taxi.features import FeatureMatrix, OneHotVectorizer, TripFeatureEncoder, Vectorizer
from taxi.gbm import GbmRegressor


class SparseLinearRegression(LinearRegression):
    """Ordinary least squares, solved exactly for tall one-hot designs.

    scikit-learn's LinearRegression solves sparse problems with LSQR, which is slow on a large
    month (docs/performance.md) and stops at a tolerance. The design here has a few hundred
    columns, so the normal equations are tiny: this computes the same minimum-norm
    least-squares solution LinearRegression converges to (pseudo-inverse of the centred Gram
    matrix), exactly and in a fraction of the time. Prediction is LinearRegression's own.
    """

    def fit(
        self, X: FeatureMatrix, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> SparseLinearRegression:
        if sample_weight is not None:
            raise ValueError("SparseLinearRegression does not support sample weights")
        if not self.fit_intercept:
            raise ValueError("SparseLinearRegression always fits an intercept")
        X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
        y = np.asarray(y, dtype=np.float64)
        n_rows = X.shape[0]
        if n_rows == 0 or n_rows != y.shape[0]:
            raise ValueError(
                f"need as many targets as rows and at least one row, got {n_rows} rows and {y.shape[0]} targets"
            )

        gram = _gram(X)
        sums = np.asarray(X.sum(axis=0)).ravel()
        self.coef_, self.intercept_, self.rank_ = solve_normal_equations(
            gram, sums, X.T @ y, float(y.sum()), n_rows
        )
        self.n_features_in_ = X.shape[1]
        return self


class OneHotNormalEquations:
    """The course's one-hot linear regression fitted month by month in bounded memory.

    Each `add` folds a batch of processed trips into the sufficient statistics of least
    squares (X'X, column sums, X'y, sum(y), sum(y^2), rows), indexing categories in the order
    they are first seen; `fit` reorders them as a fit on all batches together would
    (OneHotVectorizer's sorted categories) and solves. Memory is one batch plus a
    features-by-features matrix, whatever the number of batches.
    """

    def __init__(self, columns: Sequence[str] = CATEGORICAL_COLUMNS):
        self.columns = tuple(columns)
        self._features: list[dict[int, int]] = [{} for _ in self.columns]
        self._n_features = 0
        self._gram = np.zeros((0, 0), dtype=np.int64)
        self._sums = np.zeros(0, dtype=np.int64)
        self._moment = np.zeros(0, dtype=np.float64)
        self.n_rows = 0
        self.y_sum = 0.0
        self.y_squared_sum = 0.0

    def add(self, trips: pd.DataFrame, y: np.ndarray) -> None:
        """Fold in processed trips (categories already encoded as integers) and their targets."""
        y = np.asarray(y, dtype=np.float64)
        if len(trips) != y.shape[0]:
            raise ValueError(
                f"need as many targets as rows, got {len(trips)} rows and {y.shape[0]} targets"
            )
        if y.size == 0:
            return
        codes = np.empty((len(trips), len(self.columns)), dtype=np.int64)
        for i, column in enumerate(self.columns):
            distinct, inverse = np.unique(
                trips[column].to_numpy(dtype=np.int64), return_inverse=True
            )
            codes[:, i] = np.array(
                [self._feature(i, int(value)) for value in distinct], dtype=np.int64
            )[inverse]
        self._grow()
        X = sp.csr_matrix(
            (np.ones(codes.size), codes.ravel(), np.arange(0, codes.size + 1, len(self.columns))),
            shape=(len(trips), self._n_features),
        )
        self._gram += _gram(X).astype(np.int64)
        self._sums += np.bincount(codes.ravel(), minlength=self._n_features)
        self._moment += X.T @ y
        self.n_rows += y.size
        self.y_sum += float(y.sum())
        self.y_squared_sum += float(y @ y)

    def fit(self) -> tuple[SparseLinearRegression, OneHotVectorizer]:
        """The fitted model and its vectorizer, the same as fitting both on all batches at once."""
        if self.n_rows == 0:
            raise ValueError("no trips were added: nothing to fit")
        categories, order = self._sorted_features()
        gram, sums, moment = (
            self._gram[np.ix_(order, order)],
            self._sums[order],
            self._moment[order],
        )
        model = SparseLinearRegression()
        model.coef_, model.intercept_, model.rank_ = solve_normal_equations(
            gram, sums, moment, self.y_sum, self.n_rows
        )
        model.n_features_in_ = len(order)
        return model, OneHotVectorizer.from_categories(categories, self.columns)

    def rmse(self, model: SparseLinearRegression) -> float:
        """RMSE of `model` (from `fit`) on every trip added, from the sufficient statistics
        alone."""
        if model.coef_.shape != (self._n_features,):
            raise ValueError("rmse needs the model returned by this accumulator's fit")
        # The coefficients back in the order the statistics were gathered in.
        w = np.empty(self._n_features)
        w[self._sorted_features()[1]] = model.coef_
        b, n = model.intercept_, self.n_rows
        squared_error = (
            self.y_squared_sum
            - 2 * b * self.y_sum
            - 2 * float(w @ self._moment)
            + n * b * b
            + 2 * b * float(w @ self._sums)
            + float(w @ (self._gram.astype(np.float64) @ w))
        )
        return float(np.sqrt(max(squared_error, 0.0) / n))

    def _sorted_features(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Each column's categories sorted (OneHotVectorizer's order), and the index each of
        those features was gathered under."""
        categories = {
            column: np.array(sorted(self._features[i]), dtype=np.int64)
            for i, column in enumerate(self.columns)
        }
        order = np.array(
            [
                self._features[i][int(value)]
                for i, column in enumerate(self.columns)
                for value in categories[column]
            ]
        )
        return categories, order

    def _feature(self, column_index: int, value: int) -> int:
        features = self._features[column_index]
        if value not in features:
            features[value] = self._n_features
            self._n_features += 1
        return features[value]

    def _grow(self) -> None:
        n, old = self._n_features, self._sums.size
        if n == old:
            return
        gram = np.zeros((n, n), dtype=np.int64)
        gram[:old, :old] = self._gram
        self._gram = gram
        self._sums = np.concatenate([self._sums, np.zeros(n - old, dtype=np.int64)])
        self._moment = np.concatenate([self._moment, np.zeros(n - old)])


def solve_normal_equations(
    gram: np.ndarray, sums: np.ndarray, moment: np.ndarray, y_sum: float, n_rows: int
) -> tuple[np.ndarray, float, int]:
    """Minimum-norm least-squares coefficients, intercept and rank from the sufficient statistics
    X'X (`gram`), the column sums, X'y (`moment`), sum(y) and the number of rows."""
    # Centred normal equations scaled by n, M = n X'X - s s' and b = n X'y - s sum(y)
    # (s: column sums), so that for 0/1 features every entry of M is an exact integer:
    # centring by subtracting means would leave rounding noise where the exact matrix
    # is singular.
    if np.issubdtype(gram.dtype, np.integer) and n_rows < _EXACT_ROWS:
        sums = np.asarray(sums).astype(np.int64)
    else:
        gram = gram.astype(np.float64)
    scaled_gram = (n_rows * gram - np.outer(sums, sums)).astype(np.float64)
    scaled_moment = n_rows * np.asarray(moment, dtype=np.float64) - sums * y_sum
    # One-hot groups make M singular (each group sums to a constant), and so do
    # categories that always occur together: the pseudo-inverse picks the minimum-norm
    # solution, which is the one LinearRegression's LSQR converges to.
    eigenvalues, eigenvectors = np.linalg.eigh(scaled_gram)
    kept = eigenvalues > max(eigenvalues.max(initial=0.0), 0.0) * _RELATIVE_CUTOFF
    basis = eigenvectors[:, kept]
    coef = basis @ ((basis.T @ scaled_moment) / eigenvalues[kept])
    intercept = y_sum / n_rows - float(sums @ coef) / n_rows
    return coef, intercept, int(kept.sum())


# eigh resolves eigenvalues to about n_features * eps * the largest (~1e-13 of it here), so a
# direction the data leave undetermined shows up as a tiny eigenvalue of either sign. A real
# direction is at least as large as a category seen once, about largest / n_rows: 1e-10
# separates the two for any month below ten billion trips.
_RELATIVE_CUTOFF = 1e-10
# n_rows * counts stays an exact integer in float64 below 2**53, i.e. up to ~9e7 rows.
_EXACT_ROWS = 90_000_000


def _gram(X: sp.csr_matrix) -> np.ndarray:
    """X.T @ X as a dense array: int64 counts, counted with bincount, when X is one-hot with a
    fixed number of ones per row (every training row of OneHotVectorizer), several times
    faster than the sparse product; float64 otherwise."""
    n_features = X.shape[1]
    row_nnz = np.diff(X.indptr)
    per_row = int(row_nnz[0]) if row_nnz.size else 0
    if per_row and (row_nnz == per_row).all() and (X.data == 1).all():
        codes = X.indices.reshape(-1, per_row).astype(np.int64)
        gram = np.zeros((n_features, n_features), dtype=np.int64)
        for i in range(per_row):
            gram[np.diag_indices(n_features)] += np.bincount(codes[:, i], minlength=n_features)
            for j in range(i + 1, per_row):
                pairs = np.bincount(
                    codes[:, i] * n_features + codes[:, j], minlength=n_features * n_features
                )
                pairs = pairs.reshape(n_features, n_features)
                gram += pairs + pairs.T
        return gram
    return np.asarray((X.T @ X).todense(), dtype=np.float64)


MODEL_TYPES = ("linear", "gbm")
Model = SparseLinearRegression | GbmRegressor


def check_model_type(model_type: str, use_trip_distance: bool = False) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}")
    if use_trip_distance and model_type != "gbm":
        raise ValueError(
            "use_trip_distance applies to model_type='gbm' only (the linear model is the course's)"
        )


def make_vectorizer(model_type: str = "linear", use_trip_distance: bool = False) -> Vectorizer:
    """An unfitted vectorizer for `model_type`: the course one-hot encoding for "linear",
    the request-time trip features for "gbm"."""
    check_model_type(model_type, use_trip_distance)
    if model_type == "linear":
        return OneHotVectorizer()
    # The ride's distance is not a discrete key: that model is not tabulated, and keeps the
    # minute-resolution hour, which tests better than quarter hours there (docs/models.md).
    return TripFeatureEncoder(use_trip_distance=use_trip_distance, tabular=not use_trip_distance)


def train_model(
    X: FeatureMatrix,
    y: np.ndarray,
    model_type: str = "linear",
    vectorizer: Vectorizer | None = None,
) -> Model:
    """Fit the model: the course's linear regression on one-hot features ("linear"), or
    gradient-boosted trees on the trip features ("gbm"). Given the fitted `vectorizer` that made
    X, the trees are fitted within its interaction groups and predicted from lookup tables
    (taxi.gbm_tables); without it, unconstrained and predicted tree by tree."""
    check_model_type(model_type)
    if model_type == "linear":
        return SparseLinearRegression().fit(X, y)
    return GbmRegressor().fit(X, y, encoder=vectorizer)


def predict(model: Model, X: FeatureMatrix) -> np.ndarray:
    """Predicted trip durations in minutes."""
    return np.asarray(model.predict(X), dtype=np.float64)


def evaluate_model(model: Model, X: FeatureMatrix, y: np.ndarray) -> float:
    """Root mean squared error, in minutes."""
    return float(root_mean_squared_error(y, predict(model, X)))


def training_rmse(model: Model, X: FeatureMatrix, y: np.ndarray) -> float:
    """RMSE on the training data `model` was just fitted on. For "gbm", on the trips the trees
    were fitted on (all of them up to taxi.gbm.MAX_FIT_ROWS, a sample past it), as XGBoost
    tracked it while fitting: predicting the cross-fitted training features again would walk
    every tree for every trip (their target encodings differ between folds, so the lookup
    tables do not apply)."""
    fitted = getattr(model, "fit_rmse_", None)
    return float(fitted) if fitted is not None else evaluate_model(model, X, y)
