"""Training, evaluating and applying the trip-duration model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

from taxi.features import OneHotVectorizer, TripFeatureEncoder
from taxi.gbm import GbmRegressor


class SparseLinearRegression(LinearRegression):
    """Ordinary least squares, solved exactly for tall one-hot designs.

    scikit-learn's LinearRegression solves sparse problems with LSQR, which on a 1.4M-trip
    month takes about ten seconds and stops at a tolerance. The design here has a few hundred
    columns, so the normal equations are tiny: this computes the same minimum-norm
    least-squares solution LinearRegression converges to (pseudo-inverse of the centred Gram
    matrix), exactly and in a fraction of the time. Prediction is LinearRegression's own.
    """

    def fit(self, X, y, sample_weight=None):  # noqa: N803 (scikit-learn's argument names)
        if sample_weight is not None:
            raise ValueError("SparseLinearRegression does not support sample weights")
        if not self.fit_intercept:
            raise ValueError("SparseLinearRegression always fits an intercept")
        X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
        y = np.asarray(y, dtype=np.float64)
        n_rows = X.shape[0]
        if n_rows == 0 or n_rows != y.shape[0]:
            raise ValueError(f"need as many targets as rows and at least one row, got {n_rows} rows and {y.shape[0]} targets")

        # Centred normal equations scaled by n, M = n X'X - s s' and b = n X'y - s sum(y)
        # (s: column sums), so that for 0/1 features every entry of M is an exact integer:
        # centring by subtracting means would leave rounding noise where the exact matrix
        # is singular.
        gram = _gram(X)
        sums = np.asarray(X.sum(axis=0)).ravel()
        if np.issubdtype(gram.dtype, np.integer) and n_rows < _EXACT_ROWS:
            sums = sums.astype(np.int64)
        else:
            gram = gram.astype(np.float64)
        scaled_gram = (n_rows * gram - np.outer(sums, sums)).astype(np.float64)
        scaled_moment = n_rows * (X.T @ y) - sums * y.sum()
        # One-hot groups make M singular (each group sums to a constant), and so do
        # categories that always occur together: the pseudo-inverse picks the minimum-norm
        # solution, which is the one LinearRegression's LSQR converges to.
        eigenvalues, eigenvectors = np.linalg.eigh(scaled_gram)
        kept = eigenvalues > max(eigenvalues.max(), 0.0) * _RELATIVE_CUTOFF
        basis = eigenvectors[:, kept]
        self.coef_ = basis @ ((basis.T @ scaled_moment) / eigenvalues[kept])
        self.intercept_ = float(y.mean()) - float(sums @ self.coef_) / n_rows
        self.rank_ = int(kept.sum())
        self.n_features_in_ = X.shape[1]
        return self


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
                pairs = np.bincount(codes[:, i] * n_features + codes[:, j], minlength=n_features * n_features)
                pairs = pairs.reshape(n_features, n_features)
                gram += pairs + pairs.T
        return gram
    return np.asarray((X.T @ X).todense(), dtype=np.float64)


MODEL_TYPES = ("linear", "gbm")

def check_model_type(model_type: str, use_trip_distance: bool = False) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if use_trip_distance and model_type != "gbm":
        raise ValueError("use_trip_distance applies to model_type='gbm' only (the linear model is the course's)")


def make_vectorizer(model_type: str = "linear", use_trip_distance: bool = False):
    """An unfitted vectorizer for `model_type`: the course one-hot encoding for "linear",
    the request-time trip features for "gbm"."""
    check_model_type(model_type, use_trip_distance)
    if model_type == "linear":
        return OneHotVectorizer()
    return TripFeatureEncoder(use_trip_distance=use_trip_distance)


def train_model(X, y: np.ndarray, model_type: str = "linear"):  # noqa: N803
    """Fit the model: the course's linear regression on one-hot features ("linear"), or
    gradient-boosted trees on the trip features ("gbm")."""
    check_model_type(model_type)
    if model_type == "linear":
        return SparseLinearRegression().fit(X, y)
    return GbmRegressor().fit(X, y)


def predict(model, X) -> np.ndarray:  # noqa: N803
    """Predicted trip durations in minutes."""
    return np.asarray(model.predict(X), dtype=np.float64)


def evaluate_model(model, X, y: np.ndarray) -> float:  # noqa: N803
    """Root mean squared error, in minutes."""
    return float(root_mean_squared_error(y, predict(model, X)))
