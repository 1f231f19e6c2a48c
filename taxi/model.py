"""Training, evaluating and applying the trip-duration model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error


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

        x_mean = np.asarray(X.mean(axis=0)).ravel()
        y_mean = float(y.mean())
        gram = _gram(X) - n_rows * np.outer(x_mean, x_mean)
        moment = X.T @ y - n_rows * x_mean * y_mean
        # One-hot groups make the centred Gram matrix singular (each group sums to a
        # constant): the pseudo-inverse picks the minimum-norm solution, as LSQR would.
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        cutoff = max(eigenvalues.max(), 0.0) * gram.shape[0] * np.finfo(np.float64).eps  # numpy.linalg.pinv's
        kept = eigenvalues > cutoff
        basis = eigenvectors[:, kept]
        self.coef_ = basis @ ((basis.T @ moment) / eigenvalues[kept])
        self.intercept_ = y_mean - float(x_mean @ self.coef_)
        self.rank_ = int(kept.sum())
        self.n_features_in_ = X.shape[1]
        return self


def _gram(X: sp.csr_matrix) -> np.ndarray:
    """X.T @ X as a dense array; counted with bincount when X is one-hot with a fixed number
    of ones per row (every training row of OneHotVectorizer), which is several times faster."""
    n_features = X.shape[1]
    row_nnz = np.diff(X.indptr)
    per_row = int(row_nnz[0]) if row_nnz.size else 0
    if per_row and (row_nnz == per_row).all() and (X.data == 1).all():
        codes = X.indices.reshape(-1, per_row).astype(np.int64)
        gram = np.zeros(n_features * n_features, dtype=np.float64)
        for i in range(per_row):
            for j in range(per_row):
                gram += np.bincount(codes[:, i] * n_features + codes[:, j], minlength=n_features * n_features)
        return gram.reshape(n_features, n_features)
    return np.asarray((X.T @ X).todense(), dtype=np.float64)


def train_model(X, y: np.ndarray) -> LinearRegression:  # noqa: N803
    """Fit the course model: linear regression on the one-hot features."""
    return SparseLinearRegression().fit(X, y)


def predict(model, X) -> np.ndarray:  # noqa: N803
    """Predicted trip durations in minutes."""
    return np.asarray(model.predict(X), dtype=np.float64)


def evaluate_model(model, X, y: np.ndarray) -> float:  # noqa: N803
    """Root mean squared error, in minutes."""
    return float(root_mean_squared_error(y, predict(model, X)))
