"""Turning processed trips into a model's input matrix.

`OneHotVectorizer` is what the course notebook's DictVectorizer computes for integer
categories (one column per value seen in training, values never seen contribute nothing),
built directly from integer codes instead of one Python dict per trip: on a 1.4M-trip month
that is the difference between seconds and tens of milliseconds.
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

    def fit(self, trips: pd.DataFrame, y: object = None) -> "OneHotVectorizer":
        self._check_columns(trips)
        self.categories_ = {col: _distinct(trips[col].to_numpy(dtype=np.int64)) for col in self.columns}
        self.feature_names_ = np.array(
            [f"{col}={value}" for col in self.columns for value in self.categories_[col]], dtype=object
        )
        self.n_features_ = len(self.feature_names_)
        return self

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
            indptr = np.concatenate(([0], np.cumsum(np.count_nonzero(known, axis=1), dtype=index_type)))
        data = np.ones(indices.size, dtype=np.float64)
        return sp.csr_matrix((data, indices.astype(index_type, copy=False), indptr), shape=(n_rows, self.n_features_))

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


# --- the gradient-boosting model's request-time features -------------------------------------

# Zone ids live in slots 0..N_ZONE_SLOTS-1 of lookup arrays; slot 0 is "unknown" (missing,
# -1, or an id outside the TLC's range).
N_ZONE_SLOTS = 300


def _zone_slot(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    return np.where((ids > 0) & (ids < N_ZONE_SLOTS), ids, 0)


def _smoothed_mean(keys: np.ndarray, values: np.ndarray, n_keys: int, prior: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-key mean of `values` shrunk towards a per-key prior: (sum + m prior) / (n + m); and the counts."""
    sums = np.bincount(keys, weights=values, minlength=n_keys)
    counts = np.bincount(keys, minlength=n_keys).astype(np.float64)
    return (sums + smoothing * prior) / (counts + smoothing), counts


class TripFeatureEncoder(TransformerMixin, BaseEstimator):
    """Features known when a ride is requested, for the gradient-boosting model.

    From the pickup time: hour (minute resolution), day of week, weekend flag. From the
    zones: ids, borough and service zone (zone lookup), same-zone and same-borough flags, and
    mean training durations smoothed down a hierarchy so that rare or unseen zones and pairs
    fall back to their borough's, then the global, mean: borough pair <- global, zone <- its
    borough <- global, zone pair <- borough pair; each with its log count. The pair's typical
    trip distance (from training data: a property of the pair, not of the ride). With
    `use_trip_distance`, also the ride's planned distance and the pair's minutes per mile
    times it.

    Target means are cross-fitted in `fit_transform` (each training row encoded from the
    other folds), as scikit-learn's TargetEncoder does: in-sample means let the booster learn
    the rows' own targets (test RMSE 7.00 instead of 6.36 on green 2021-02).
    """

    def __init__(
        self,
        use_trip_distance: bool = False,
        zone_lookup: pd.DataFrame | None = None,
        smoothing: float = 5.0,
        n_splits: int = 5,
        max_distance: float = 100.0,
        random_state: int = 0,
    ):
        self.use_trip_distance = use_trip_distance
        self.zone_lookup = zone_lookup
        self.smoothing = smoothing
        self.n_splits = n_splits
        self.max_distance = max_distance
        self.random_state = random_state

    def fit(self, trips: pd.DataFrame, y: np.ndarray) -> "TripFeatureEncoder":
        self._fit_zone_tables()
        self.n_train_ = len(trips)
        base = self._base(trips)
        self.tables_ = self._fit_tables(base, np.asarray(y, dtype=np.float64))
        head = self._base(trips.iloc[:1])
        self.feature_names_ = np.array([*self._target_free(trips.iloc[:1], head), *self._encode(head, self.tables_)])
        return self

    def transform(self, trips: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        base = self._base(trips)
        return self._assemble(trips, base, self._encode(base, self.tables_))

    def fit_transform(self, trips: pd.DataFrame, y: np.ndarray = None, **fit_params: object) -> np.ndarray:
        """Fit on all rows, and return out-of-fold encodings for them."""
        from sklearn.model_selection import KFold

        self.fit(trips, y)
        if self.n_splits < 2:
            return self.transform(trips)
        base = self._base(trips)
        y = np.asarray(y, dtype=np.float64)
        encoded = {name: np.empty(len(trips)) for name in self._encode({k: v[:1] for k, v in base.items()}, self.tables_)}
        for fit_rows, encode_rows in KFold(self.n_splits, shuffle=True, random_state=self.random_state).split(y):
            tables = self._fit_tables({k: v[fit_rows] for k, v in base.items()}, y[fit_rows])
            for name, values in self._encode({k: v[encode_rows] for k, v in base.items()}, tables).items():
                encoded[name][encode_rows] = values
        return self._assemble(trips, base, encoded)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self.feature_names_

    def unknown_counts(self, trips: pd.DataFrame) -> dict[str, int]:
        """Trips whose pickup or dropoff zone never occurred in training (predicted from
        their borough's or the global means)."""
        check_is_fitted(self, "tables_")
        counts = {}
        for column, table in (("PULocationID", "pu_n"), ("DOLocationID", "do_n")):
            slots = _zone_slot(trips[column].to_numpy(dtype=np.int64))
            counts[column] = int(((slots == 0) | (self.tables_[table][slots] == 0)).sum())
        return counts

    # --- internals ---------------------------------------------------------------------------

    def _fit_zone_tables(self) -> None:
        """Borough and service-zone code of each zone slot (0 for unknown)."""
        from taxi.zones import load_zone_lookup

        lookup = self.zone_lookup if self.zone_lookup is not None else load_zone_lookup()
        boroughs = sorted(lookup["Borough"].astype(str).unique())
        services = sorted(lookup["service_zone"].astype(str).unique())
        ids = lookup["LocationID"].to_numpy(dtype=np.int64)
        valid = (ids > 0) & (ids < N_ZONE_SLOTS)
        self.borough_of_ = np.zeros(N_ZONE_SLOTS, dtype=np.int64)
        self.service_of_ = np.zeros(N_ZONE_SLOTS, dtype=np.int64)
        self.borough_of_[ids[valid]] = lookup["Borough"].astype(str).map({b: i + 1 for i, b in enumerate(boroughs)}).to_numpy()[valid]
        self.service_of_[ids[valid]] = lookup["service_zone"].astype(str).map({s: i + 1 for i, s in enumerate(services)}).to_numpy()[valid]
        self.n_boroughs_ = len(boroughs) + 1

    def _base(self, trips: pd.DataFrame) -> dict[str, np.ndarray]:
        pickup = _zone_slot(trips["PULocationID"].to_numpy(dtype=np.int64))
        dropoff = _zone_slot(trips["DOLocationID"].to_numpy(dtype=np.int64))
        pickup_borough, dropoff_borough = self.borough_of_[pickup], self.borough_of_[dropoff]
        distance = trips["trip_distance"].to_numpy(dtype=np.float64, na_value=np.nan) if "trip_distance" in trips else np.full(len(trips), np.nan)
        distance = np.where((distance > 0) & (distance <= self.max_distance), distance, np.nan)
        return {
            "pu": pickup,
            "do": dropoff,
            "pb": pickup_borough,
            "db": dropoff_borough,
            "pair": pickup * N_ZONE_SLOTS + dropoff,
            "bpair": pickup_borough * self.n_boroughs_ + dropoff_borough,
            "dist": distance,
        }

    def _fit_tables(self, base: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
        m = float(self.smoothing)
        nb = self.n_boroughs_
        n_pairs = N_ZONE_SLOTS * N_ZONE_SLOTS
        mean = float(y.mean())
        slots = np.arange(n_pairs)
        # Counts are rescaled to the full training set so out-of-fold values share its scale.
        tables: dict[str, np.ndarray] = {"cscale": np.array(self.n_train_ / len(y))}
        # Typical distance of a pair, shrunk towards its pickup zone's. Cross-fitted too: in
        # sample it would leak a rare pair's own ride distance.
        known = ~np.isnan(base["dist"])
        mean_distance = float(base["dist"][known].mean()) if known.any() else 0.0
        pickup_distance, _ = _smoothed_mean(base["pu"][known], base["dist"][known], N_ZONE_SLOTS, np.full(N_ZONE_SLOTS, mean_distance), m)
        tables["pair_dist"], _ = _smoothed_mean(base["pair"][known], base["dist"][known], n_pairs, pickup_distance[slots // N_ZONE_SLOTS], m)
        pickup_borough, _ = _smoothed_mean(base["pb"], y, nb, np.full(nb, mean), m)
        dropoff_borough, _ = _smoothed_mean(base["db"], y, nb, np.full(nb, mean), m)
        tables["bpair"], _ = _smoothed_mean(base["bpair"], y, nb * nb, np.full(nb * nb, mean), m)
        tables["pu"], tables["pu_n"] = _smoothed_mean(base["pu"], y, N_ZONE_SLOTS, pickup_borough[self.borough_of_], m)
        tables["do"], tables["do_n"] = _smoothed_mean(base["do"], y, N_ZONE_SLOTS, dropoff_borough[self.borough_of_], m)
        pair_prior = tables["bpair"][self.borough_of_[slots // N_ZONE_SLOTS] * nb + self.borough_of_[slots % N_ZONE_SLOTS]]
        tables["pair"], tables["pair_n"] = _smoothed_mean(base["pair"], y, n_pairs, pair_prior, m)
        if self.use_trip_distance:
            # Minutes per mile of each pair, as a ratio of sums (robust to tiny distances),
            # shrunk by m miles at the global pace.
            miles = np.bincount(base["pair"][known], weights=base["dist"][known], minlength=n_pairs)
            minutes = np.bincount(base["pair"][known], weights=y[known], minlength=n_pairs)
            overall_pace = minutes.sum() / max(miles.sum(), 1e-9)
            tables["pace"] = (minutes + m * overall_pace) / (miles + m)
        return tables

    def _encode(self, base: dict[str, np.ndarray], tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        encoded = {
            "te_pu": tables["pu"][base["pu"]],
            "te_do": tables["do"][base["do"]],
            "te_bpair": tables["bpair"][base["bpair"]],
            "te_pair": tables["pair"][base["pair"]],
            "n_pu": np.log1p(tables["pu_n"][base["pu"]] * tables["cscale"]),
            "n_do": np.log1p(tables["do_n"][base["do"]] * tables["cscale"]),
            "n_pair": np.log1p(tables["pair_n"][base["pair"]] * tables["cscale"]),
            "pair_dist": tables["pair_dist"][base["pair"]],
        }
        if self.use_trip_distance:
            encoded["pace_x_dist"] = tables["pace"][base["pair"]] * base["dist"]
        return encoded

    def _target_free(self, trips: pd.DataFrame, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hour, day = _hour_and_day_of_week(trips["pickup_datetime"])
        features = {
            "hour": hour,
            "dow": day,
            "weekend": (day >= 5).astype(np.float64),
            "pu_id": base["pu"].astype(np.float64),
            "do_id": base["do"].astype(np.float64),
            "pu_borough": base["pb"].astype(np.float64),
            "do_borough": base["db"].astype(np.float64),
            "pu_service": self.service_of_[base["pu"]].astype(np.float64),
            "do_service": self.service_of_[base["do"]].astype(np.float64),
            "same_zone": (base["pu"] == base["do"]).astype(np.float64),
            "same_borough": (base["pb"] == base["db"]).astype(np.float64),
        }
        if self.use_trip_distance:
            features["dist"] = base["dist"]
        return features

    def _assemble(self, trips: pd.DataFrame, base: dict[str, np.ndarray], encoded: dict[str, np.ndarray]) -> np.ndarray:
        columns = {**self._target_free(trips, base), **encoded}
        # float32, one column at a time into a column-major array: what the booster reads,
        # half the memory of float64, and no row-by-row interleaving (np.column_stack of 19
        # float64 columns took most of the encoding time of a 1.4M-trip month).
        matrix = np.empty((len(trips), len(self.feature_names_)), dtype=np.float32, order="F")
        for i, name in enumerate(self.feature_names_):
            matrix[:, i] = columns[name]
        return matrix


def _hour_and_day_of_week(pickup: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day at minute resolution and day of week (Monday 0), NaN for a missing time:
    integer arithmetic on the minutes since 1970-01-01 (a Thursday), several times faster
    than pandas' datetime field accessors."""
    minutes = pd.to_datetime(pickup).to_numpy(dtype="datetime64[m]")
    missing = np.isnat(minutes)
    count = minutes.view(np.int64)
    hour = np.where(missing, np.nan, (count % 1440) / 60.0)
    day = np.where(missing, np.nan, (count // 1440 + 3) % 7)
    return hour, day
