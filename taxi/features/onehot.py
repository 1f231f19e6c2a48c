"""The course model's features: one-hot encoded categories.

`OneHotVectorizer` is what the course notebook's DictVectorizer computes for integer
categories (one column per value seen in training, values never seen contribute nothing),
built directly from integer codes instead of one Python dict per trip, which is what makes
it fast on a large month (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from taxi.config import CATEGORICAL_COLUMNS


class OneHotVectorizer(TransformerMixin, BaseEstimator):
    """One-hot encode integer category columns into a sparse CSR matrix.

    Feature names follow DictVectorizer's `column=value` convention so that models trained
    here read the same as the course's.
    """

    def __init__(self, columns: Sequence[str] = CATEGORICAL_COLUMNS):
        self.columns = columns

    def fit(self, trips: pd.DataFrame, y: object = None) -> OneHotVectorizer:
        self._check_columns(trips)
        self._set_categories(
            {col: _distinct(trips[col].to_numpy(dtype=np.int64)) for col in self.columns}
        )
        return self

    @classmethod
    def from_categories(
        cls, categories: dict[str, np.ndarray], columns: Sequence[str]
    ) -> OneHotVectorizer:
        """A vectorizer fitted to known categories (sorted distinct integers per column), as `fit`
        on trips holding exactly those values would be."""
        vectorizer = cls(columns)
        vectorizer._set_categories(
            {col: np.asarray(categories[col], dtype=np.int64) for col in columns}
        )
        return vectorizer

    def _set_categories(self, categories: dict[str, np.ndarray]) -> None:
        self.categories_ = categories
        self.feature_names_ = np.array(
            [f"{col}={value}" for col in self.columns for value in self.categories_[col]],
            dtype=object,
        )
        self.n_features_ = len(self.feature_names_)

    def transform(self, trips: pd.DataFrame) -> sp.csr_matrix:
        check_is_fitted(self, "categories_")
        self._check_columns(trips)
        codes, known = self._codes(trips)
        n_rows = len(trips)
        # 32-bit indices halve the index memory; only past 2**31 stored values are 64 needed.
        index_type = np.int32 if codes.size < 2**31 else np.int64
        if known.all():
            indices = codes.ravel()
            indptr = np.arange(0, indices.size + 1, len(self.columns), dtype=index_type)
        else:
            # Values never seen in training get no column, as with DictVectorizer.
            indices = codes[known]
            indptr = np.concatenate(
                ([0], np.cumsum(np.count_nonzero(known, axis=1), dtype=index_type))
            )
        data = np.ones(indices.size, dtype=np.float64)
        return sp.csr_matrix(
            (data, indices.astype(index_type, copy=False), indptr), shape=(n_rows, self.n_features_)
        )

    def unknown_counts(self, trips: pd.DataFrame) -> dict[str, int]:
        """How many values of each column were not seen in training."""
        check_is_fitted(self, "categories_")
        _, known = self._codes(trips)
        return {col: int((~known[:, i]).sum()) for i, col in enumerate(self.columns)}

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self.feature_names_

    def _codes(self, trips: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Global column index of each (row, column) value, and whether the value is known."""
        codes = np.empty((len(trips), len(self.columns)), dtype=np.int32)
        offset = 0
        for i, col in enumerate(self.columns):
            categories = self.categories_[col]
            position = _positions(categories, trips[col].to_numpy(dtype=np.int64))
            codes[:, i] = np.where(position >= 0, position + offset, -1)
            offset += len(categories)
        return codes, codes >= 0

    def _check_columns(self, trips: pd.DataFrame) -> None:
        missing = [col for col in self.columns if col not in trips.columns]
        if missing:
            raise KeyError(f"OneHotVectorizer needs columns {missing}, which are not in the data")


# Category values are small integers (zone ids up to a few hundred, passenger counts): a
# lookup table indexed by value beats sorting and binary search several times over. Other
# ranges fall back to the sorted-array methods.
_MAX_TABLE_SPAN = 1 << 20


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values."""
    if values.size == 0:
        return values.copy()
    low, high = int(values.min()), int(values.max())
    if high - low < _MAX_TABLE_SPAN:
        return np.flatnonzero(np.bincount(values - low)) + low
    return np.unique(values)


def _positions(categories: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted `categories`, -1 where it is not there."""
    if categories.size == 0:
        return np.full(values.shape, -1, dtype=np.int32)
    low, high = int(categories[0]), int(categories[-1])
    if high - low < _MAX_TABLE_SPAN:
        table = np.full(high - low + 1, -1, dtype=np.int32)
        table[categories - low] = np.arange(categories.size, dtype=np.int32)
        shifted = values - low
        inside = (shifted >= 0) & (shifted <= high - low)
        return np.where(inside, table[np.clip(shifted, 0, high - low)], -1)
    position = np.minimum(np.searchsorted(categories, values), categories.size - 1)
    return np.where(categories[position] == values, position, -1).astype(np.int32)
