"""The gradient-boosting model's features: what is known when a ride is requested.

Stored gbm versions pickle `TripFeatureEncoder` and `TargetTables`: both keep this module,
their names and their attributes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

import taxi.features.tabulation as tabulation
from taxi.features.trip_keys import (
    N_ZONE_PAIRS,
    N_ZONE_SLOTS,
    TripKeys,
    as_float32,
    target_free_features,
    trip_keys,
    zone_codes,
    zone_slot,
)
from taxi.gbm_tables import FeatureGroup
from taxi.zones import load_zone_lookup


@dataclass(frozen=True)
class TargetTables:
    """What fitting learns, by key: smoothed mean durations (minutes), trip counts, distances."""

    count_scale: float  # training rows / rows these tables were fitted on (out-of-fold < 1)
    pair_distance: np.ndarray  # typical miles of each zone pair
    borough_pair_mean: np.ndarray
    pickup_mean: np.ndarray
    pickup_count: np.ndarray
    dropoff_mean: np.ndarray
    dropoff_count: np.ndarray
    pair_mean: np.ndarray
    pair_count: np.ndarray
    pace: np.ndarray | None  # minutes per mile of each zone pair (with use_trip_distance)


# TargetTables' fields under the names taxi 0.1 pickled them with (a dict), for loading
# gbm models stored by that version.
_TABLES_0_1 = {
    "cscale": "count_scale",
    "pair_dist": "pair_distance",
    "bpair": "borough_pair_mean",
    "pu": "pickup_mean",
    "pu_n": "pickup_count",
    "do": "dropoff_mean",
    "do_n": "dropoff_count",
    "pair": "pair_mean",
    "pair_n": "pair_count",
    "pace": "pace",
}


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

    With `tabular` (the default; encoders pickled before it existed keep their features), the
    hour is in quarter hours, with two more features: the 4-hour block of the day and the
    pair's length class. Then every feature is a function of a few discrete keys, and
    `interaction_groups` says which features the trees may combine; a model trained within
    them predicts from lookup tables filled from `tabulation_trips` (taxi.features.tabulation).

    Target means are cross-fitted in `fit_transform` (each training row encoded from the
    other folds), as scikit-learn's TargetEncoder does: with in-sample means the booster would
    learn the rows' own targets, and test RMSE suffers (docs/models.md).
    """

    def __init__(
        self,
        use_trip_distance: bool = False,
        zone_lookup: pd.DataFrame | None = None,
        smoothing: float = 5.0,
        n_splits: int = 5,
        max_distance: float = 100.0,
        random_state: int = 0,
        tabular: bool = True,
    ):
        self.use_trip_distance = use_trip_distance
        self.tabular = tabular
        self.zone_lookup = zone_lookup
        self.smoothing = smoothing
        self.n_splits = n_splits
        self.max_distance = max_distance
        self.random_state = random_state

    def fit(self, trips: pd.DataFrame, y: np.ndarray) -> TripFeatureEncoder:
        lookup = self.zone_lookup if self.zone_lookup is not None else load_zone_lookup()
        self.borough_of_ = zone_codes(lookup, "Borough")
        self.service_of_ = zone_codes(lookup, "service_zone")
        self.n_boroughs_ = lookup["Borough"].astype(str).nunique() + 1
        self.n_train_ = len(trips)
        keys = self._keys(trips)
        self.tables_ = self._fit_tables(keys, np.asarray(y, dtype=np.float64))
        if self.tabular:
            self.length_edges_ = tabulation.length_class_edges(
                self.tables_.pair_mean[keys.zone_pair]
            )
        head = self._keys(trips.iloc[:1])
        names = [*self._target_free(trips.iloc[:1], head), *self._encode(head, self.tables_)]
        self.feature_names_ = np.array(names)
        return self

    def transform(self, trips: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        keys = self._keys(trips)
        return self._assemble(trips, keys, self._encode(keys, self.tables_))

    def fit_transform(
        self, trips: pd.DataFrame, y: np.ndarray | None = None, **fit_params: object
    ) -> np.ndarray:
        """Fit on all rows, and return out-of-fold encodings for them."""
        from sklearn.model_selection import KFold  # only training needs it: keeps imports light

        self.fit(trips, y)
        if self.n_splits < 2:
            return self.transform(trips)
        keys = self._keys(trips)
        y = np.asarray(y, dtype=np.float64)
        names = self._encode(keys.rows(slice(0, 1)), self.tables_)
        encoded = {name: np.empty(len(trips), dtype=np.float32) for name in names}
        folds = KFold(self.n_splits, shuffle=True, random_state=self.random_state)
        for fit_rows, encode_rows in folds.split(y):
            tables = self._fit_tables(keys.rows(fit_rows), y[fit_rows])
            for name, values in self._encode(keys.rows(encode_rows), tables).items():
                encoded[name][encode_rows] = values
        return self._assemble(trips, keys, encoded)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self.feature_names_

    def unknown_counts(self, trips: pd.DataFrame) -> dict[str, int]:
        """Trips whose pickup or dropoff zone never occurred in training (predicted from
        their borough's or the global means)."""
        check_is_fitted(self, "tables_")
        counts = {}
        seen_by_column = {
            "PULocationID": self.tables_.pickup_count,
            "DOLocationID": self.tables_.dropoff_count,
        }
        for column, seen in seen_by_column.items():
            slots = zone_slot(trips[column].to_numpy(dtype=np.int64))
            counts[column] = int(((slots == 0) | (seen[slots] == 0)).sum())
        return counts

    def interaction_groups(self) -> tuple[FeatureGroup, ...] | None:
        """The feature groups a tabulated model is trained within (taxi.features.tabulation);
        None without `tabular` or with `use_trip_distance` (a distance is not a discrete key)."""
        check_is_fitted(self, "tables_")
        if not self.tabular or self.use_trip_distance:
            return None
        return tabulation.interaction_groups(
            self.n_boroughs_, tabulation.n_services(self.service_of_)
        )

    def tabulation_trips(self) -> pd.DataFrame:
        """Synthetic trips covering the keys of `interaction_groups` that trips are likely to
        have (taxi.features.tabulation.tabulation_trips)."""
        check_is_fitted(self, "length_edges_")
        tables = self.tables_
        return tabulation.tabulation_trips(
            tables.pair_count,
            tables.pair_mean,
            self.borough_of_,
            self.service_of_,
            self.length_edges_,
        )

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("tabular", False)  # pickled before tabular features existed
        tables = state.get("tables_")
        if isinstance(tables, dict):  # pickled by taxi 0.1
            values = {name: tables.get(old) for old, name in _TABLES_0_1.items()}
            state["tables_"] = TargetTables(
                **{**values, "count_scale": float(values["count_scale"])}
            )
        super().__setstate__(state)

    # --- internals ---------------------------------------------------------------------------

    def _keys(self, trips: pd.DataFrame) -> TripKeys:
        return trip_keys(trips, self.borough_of_, self.n_boroughs_, self.max_distance)

    def _fit_tables(self, keys: TripKeys, y: np.ndarray) -> TargetTables:
        return fit_target_tables(
            keys,
            y,
            borough_of=self.borough_of_,
            n_boroughs=self.n_boroughs_,
            smoothing=float(self.smoothing),
            n_train=self.n_train_,
            with_pace=self.use_trip_distance,
        )

    def _encode(self, keys: TripKeys, tables: TargetTables) -> dict[str, np.ndarray]:
        return encode_targets(keys, tables, self.length_edges_ if self.tabular else None)

    def _target_free(self, trips: pd.DataFrame, keys: TripKeys) -> dict[str, np.ndarray]:
        return target_free_features(
            trips, keys, self.service_of_, self.tabular, self.use_trip_distance
        )

    def _assemble(
        self, trips: pd.DataFrame, keys: TripKeys, encoded: dict[str, np.ndarray]
    ) -> np.ndarray:
        columns = {**self._target_free(trips, keys), **encoded}
        # float32, one column at a time into a column-major array: what the booster reads,
        # half the memory of float64, and none of the row-by-row interleaving that made
        # np.column_stack of float64 columns most of the encoding time.
        matrix = np.empty((len(trips), len(self.feature_names_)), dtype=np.float32, order="F")
        for i, name in enumerate(self.feature_names_):
            matrix[:, i] = columns[name]
        return matrix


def fit_target_tables(
    keys: TripKeys,
    y: np.ndarray,
    *,
    borough_of: np.ndarray,
    n_boroughs: int,
    smoothing: float,
    n_train: int,
    with_pace: bool,
) -> TargetTables:
    """The tables of `keys`' trips with durations `y`, means shrunk by `smoothing` trips
    towards their parent in the hierarchy (see TripFeatureEncoder); counts are rescaled to
    the `n_train` training rows so that out-of-fold values share the full set's scale."""
    m = smoothing
    nb = n_boroughs
    mean = float(y.mean())
    slots = np.arange(N_ZONE_PAIRS)
    # Typical distance of a pair, shrunk towards its pickup zone's. Cross-fitted too: in
    # sample it would leak a rare pair's own ride distance.
    known = ~np.isnan(keys.distance)
    miles = keys.distance[known]
    mean_distance = float(miles.mean()) if known.any() else 0.0
    pickup_prior = np.full(N_ZONE_SLOTS, mean_distance)
    pickup_distance, _ = _smoothed_mean(
        keys.pickup_zone[known], miles, N_ZONE_SLOTS, pickup_prior, m
    )
    pair_distance_prior = pickup_distance[slots // N_ZONE_SLOTS]
    pair_distance, _ = _smoothed_mean(
        keys.zone_pair[known], miles, N_ZONE_PAIRS, pair_distance_prior, m
    )
    pickup_borough, _ = _smoothed_mean(keys.pickup_borough, y, nb, np.full(nb, mean), m)
    dropoff_borough, _ = _smoothed_mean(keys.dropoff_borough, y, nb, np.full(nb, mean), m)
    borough_pair, _ = _smoothed_mean(keys.borough_pair, y, nb * nb, np.full(nb * nb, mean), m)
    pickup_prior = pickup_borough[borough_of]
    pickup, pickup_count = _smoothed_mean(keys.pickup_zone, y, N_ZONE_SLOTS, pickup_prior, m)
    dropoff_prior = dropoff_borough[borough_of]
    dropoff, dropoff_count = _smoothed_mean(keys.dropoff_zone, y, N_ZONE_SLOTS, dropoff_prior, m)
    pair_prior = borough_pair[
        borough_of[slots // N_ZONE_SLOTS] * nb + borough_of[slots % N_ZONE_SLOTS]
    ]
    pair, pair_count = _smoothed_mean(keys.zone_pair, y, N_ZONE_PAIRS, pair_prior, m)
    pace = None
    if with_pace:
        # Minutes per mile of each pair, as a ratio of sums (robust to tiny distances),
        # shrunk by m miles at the global pace.
        pair_miles = np.bincount(keys.zone_pair[known], weights=miles, minlength=N_ZONE_PAIRS)
        pair_minutes = np.bincount(keys.zone_pair[known], weights=y[known], minlength=N_ZONE_PAIRS)
        overall_pace = pair_minutes.sum() / max(pair_miles.sum(), 1e-9)
        pace = (pair_minutes + m * overall_pace) / (pair_miles + m)
    return TargetTables(
        count_scale=n_train / len(y),
        pair_distance=pair_distance,
        borough_pair_mean=borough_pair,
        pickup_mean=pickup,
        pickup_count=pickup_count,
        dropoff_mean=dropoff,
        dropoff_count=dropoff_count,
        pair_mean=pair,
        pair_count=pair_count,
        pace=pace,
    )


def encode_targets(
    keys: TripKeys, tables: TargetTables, length_edges: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The target-derived features, by feature name (float32 as each is made: the matrix's
    type, and half the memory while a month's columns wait to be assembled); the pair's
    length class too, given the class edges of the tabular features."""
    scale = tables.count_scale
    pair_mean = tables.pair_mean[keys.zone_pair]
    encoded = {
        "te_pu": as_float32(tables.pickup_mean[keys.pickup_zone]),
        "te_do": as_float32(tables.dropoff_mean[keys.dropoff_zone]),
        "te_bpair": as_float32(tables.borough_pair_mean[keys.borough_pair]),
        "te_pair": as_float32(pair_mean),
        "n_pu": as_float32(np.log1p(tables.pickup_count[keys.pickup_zone] * scale)),
        "n_do": as_float32(np.log1p(tables.dropoff_count[keys.dropoff_zone] * scale)),
        "n_pair": as_float32(np.log1p(tables.pair_count[keys.zone_pair] * scale)),
        "pair_dist": as_float32(tables.pair_distance[keys.zone_pair]),
    }
    if tables.pace is not None:
        encoded["pace_x_dist"] = as_float32(tables.pace[keys.zone_pair] * keys.distance)
    if length_edges is not None:
        length_classes = tabulation.pair_length_classes(length_edges, tables.pair_mean)
        encoded["pair_length"] = as_float32(length_classes[keys.zone_pair])
    return encoded


def _smoothed_mean(
    keys: np.ndarray, values: np.ndarray, n_keys: int, prior: np.ndarray, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-key mean of `values` shrunk towards a per-key prior, (sum + m prior) / (n + m),
    and the counts."""
    sums = np.bincount(keys, weights=values, minlength=n_keys)
    counts = np.bincount(keys, minlength=n_keys).astype(np.float64)
    return (sums + smoothing * prior) / (counts + smoothing), counts
