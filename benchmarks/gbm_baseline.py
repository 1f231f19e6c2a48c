"""The gbm model as it was before benchmarks/gbm.py was written, frozen as its baseline.

A verbatim copy of taxi.features.TripFeatureEncoder (float64 features assembled with
column_stack, pandas datetime accessors) and of the HistGradientBoostingRegressor settings
(600 trees) that taxi.model used, so that the benchmark's baseline stays what it was whatever
later happens to the package. Not used by the package itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

GBM_PARAMS = dict(
    loss="squared_error",
    learning_rate=0.1,
    max_iter=600,
    max_leaf_nodes=31,
    min_samples_leaf=200,
    l2_regularization=1.0,
    max_features=0.5,
    early_stopping=False,
    random_state=0,
)


def train_baseline_model(X, y: np.ndarray) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(**GBM_PARAMS).fit(X, y)


# --- the gradient-boosting model's request-time features -------------------------------------

# Zone ids live in slots 0..N_ZONE_SLOTS-1 of lookup arrays; slot 0 is "unknown" (missing,
# -1, or an id outside the TLC's range).
N_ZONE_SLOTS = 300


def _zone_slot(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    return np.where((ids > 0) & (ids < N_ZONE_SLOTS), ids, 0)


def _smoothed_mean(
    keys: np.ndarray, values: np.ndarray, n_keys: int, prior: np.ndarray, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
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

    def fit(self, trips: pd.DataFrame, y: np.ndarray) -> TripFeatureEncoder:
        self._fit_zone_tables()
        self.n_train_ = len(trips)
        base = self._base(trips)
        self.tables_ = self._fit_tables(base, np.asarray(y, dtype=np.float64))
        head = self._base(trips.iloc[:1])
        self.feature_names_ = np.array(
            [*self._target_free(trips.iloc[:1], head), *self._encode(head, self.tables_)]
        )
        return self

    def transform(self, trips: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        base = self._base(trips)
        return self._assemble(trips, base, self._encode(base, self.tables_))

    def fit_transform(
        self, trips: pd.DataFrame, y: np.ndarray = None, **fit_params: object
    ) -> np.ndarray:
        """Fit on all rows, and return out-of-fold encodings for them."""
        from sklearn.model_selection import KFold

        self.fit(trips, y)
        if self.n_splits < 2:
            return self.transform(trips)
        base = self._base(trips)
        y = np.asarray(y, dtype=np.float64)
        encoded = {
            name: np.empty(len(trips))
            for name in self._encode({k: v[:1] for k, v in base.items()}, self.tables_)
        }
        for fit_rows, encode_rows in KFold(
            self.n_splits, shuffle=True, random_state=self.random_state
        ).split(y):
            tables = self._fit_tables({k: v[fit_rows] for k, v in base.items()}, y[fit_rows])
            for name, values in self._encode(
                {k: v[encode_rows] for k, v in base.items()}, tables
            ).items():
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
        self.borough_of_[ids[valid]] = (
            lookup["Borough"]
            .astype(str)
            .map({b: i + 1 for i, b in enumerate(boroughs)})
            .to_numpy()[valid]
        )
        self.service_of_[ids[valid]] = (
            lookup["service_zone"]
            .astype(str)
            .map({s: i + 1 for i, s in enumerate(services)})
            .to_numpy()[valid]
        )
        self.n_boroughs_ = len(boroughs) + 1

    def _base(self, trips: pd.DataFrame) -> dict[str, np.ndarray]:
        pickup = _zone_slot(trips["PULocationID"].to_numpy(dtype=np.int64))
        dropoff = _zone_slot(trips["DOLocationID"].to_numpy(dtype=np.int64))
        pickup_borough, dropoff_borough = self.borough_of_[pickup], self.borough_of_[dropoff]
        distance = (
            trips["trip_distance"].to_numpy(dtype=np.float64, na_value=np.nan)
            if "trip_distance" in trips
            else np.full(len(trips), np.nan)
        )
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
        pickup_distance, _ = _smoothed_mean(
            base["pu"][known],
            base["dist"][known],
            N_ZONE_SLOTS,
            np.full(N_ZONE_SLOTS, mean_distance),
            m,
        )
        tables["pair_dist"], _ = _smoothed_mean(
            base["pair"][known],
            base["dist"][known],
            n_pairs,
            pickup_distance[slots // N_ZONE_SLOTS],
            m,
        )
        pickup_borough, _ = _smoothed_mean(base["pb"], y, nb, np.full(nb, mean), m)
        dropoff_borough, _ = _smoothed_mean(base["db"], y, nb, np.full(nb, mean), m)
        tables["bpair"], _ = _smoothed_mean(base["bpair"], y, nb * nb, np.full(nb * nb, mean), m)
        tables["pu"], tables["pu_n"] = _smoothed_mean(
            base["pu"], y, N_ZONE_SLOTS, pickup_borough[self.borough_of_], m
        )
        tables["do"], tables["do_n"] = _smoothed_mean(
            base["do"], y, N_ZONE_SLOTS, dropoff_borough[self.borough_of_], m
        )
        pair_prior = tables["bpair"][
            self.borough_of_[slots // N_ZONE_SLOTS] * nb + self.borough_of_[slots % N_ZONE_SLOTS]
        ]
        tables["pair"], tables["pair_n"] = _smoothed_mean(base["pair"], y, n_pairs, pair_prior, m)
        if self.use_trip_distance:
            # Minutes per mile of each pair, as a ratio of sums (robust to tiny distances),
            # shrunk by m miles at the global pace.
            miles = np.bincount(base["pair"][known], weights=base["dist"][known], minlength=n_pairs)
            minutes = np.bincount(base["pair"][known], weights=y[known], minlength=n_pairs)
            overall_pace = minutes.sum() / max(miles.sum(), 1e-9)
            tables["pace"] = (minutes + m * overall_pace) / (miles + m)
        return tables

    def _encode(
        self, base: dict[str, np.ndarray], tables: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
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

    def _target_free(
        self, trips: pd.DataFrame, base: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        pickup_time = pd.to_datetime(trips["pickup_datetime"])
        hour = (pickup_time.dt.hour + pickup_time.dt.minute / 60.0).to_numpy(dtype=np.float64)
        day = pickup_time.dt.day_of_week.to_numpy(dtype=np.float64)
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

    def _assemble(
        self, trips: pd.DataFrame, base: dict[str, np.ndarray], encoded: dict[str, np.ndarray]
    ) -> np.ndarray:
        columns = {**self._target_free(trips, base), **encoded}
        return np.column_stack([columns[name] for name in self.feature_names_])
