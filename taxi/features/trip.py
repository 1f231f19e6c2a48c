"""The gradient-boosting model's features: what is known when a ride is requested."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from taxi.gbm_tables import FeatureGroup, KeyColumn
from taxi.zones import load_zone_lookup

# Zone ids live in slots 0..N_ZONE_SLOTS-1 of lookup arrays; slot 0 is "unknown" (missing,
# -1, or an id outside the TLC's range).
N_ZONE_SLOTS = 300
N_ZONE_PAIRS = N_ZONE_SLOTS * N_ZONE_SLOTS
# With `tabular`: the pickup hour in quarter hours, blocks of this many hours, and this many
# classes of zone pairs by their mean training duration.
HOUR_BLOCK_HOURS = 4
N_PAIR_LENGTH_CLASSES = 16
# Features that are functions of the zone pair, and of its zones' borough and service zone.
PAIR_FEATURES = (
    "pu_id", "do_id", "pu_borough", "do_borough", "pu_service", "do_service", "same_zone", "same_borough",
    "te_pu", "te_do", "te_bpair", "te_pair", "n_pu", "n_do", "n_pair", "pair_dist", "pair_length",
)  # fmt: skip
ZONE_CLASS_FEATURES = ("pu_borough", "do_borough", "pu_service", "do_service", "same_borough", "te_bpair")
TIME_FEATURES = ("hour", "dow", "weekend", "hour_block")


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


def _zone_codes(lookup: pd.DataFrame, column: str) -> np.ndarray:
    """The code (1 + rank of the sorted distinct values) of `column` for each zone slot; 0
    for unknown."""
    values = lookup[column].astype(str)
    codes = values.map({value: i + 1 for i, value in enumerate(sorted(values.unique()))}).to_numpy()
    ids = lookup["LocationID"].to_numpy(dtype=np.int64)
    valid = (ids > 0) & (ids < N_ZONE_SLOTS)
    by_slot = np.zeros(N_ZONE_SLOTS, dtype=np.int64)
    by_slot[ids[valid]] = codes[valid]
    return by_slot


@dataclass(frozen=True)
class TripKeys:
    """Each trip's lookup keys into the fitted tables: one array per kind, one entry per trip."""

    pickup_zone: np.ndarray  # zone slot, 0 for unknown
    dropoff_zone: np.ndarray
    pickup_borough: np.ndarray  # borough code, 0 for unknown
    dropoff_borough: np.ndarray
    zone_pair: np.ndarray  # pickup_zone * N_ZONE_SLOTS + dropoff_zone
    borough_pair: np.ndarray  # pickup_borough * n_boroughs + dropoff_borough
    distance: np.ndarray  # the ride's planned miles, NaN where missing or implausible

    def rows(self, index: np.ndarray | slice) -> TripKeys:
        return TripKeys(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


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
    "cscale": "count_scale", "pair_dist": "pair_distance", "bpair": "borough_pair_mean",
    "pu": "pickup_mean", "pu_n": "pickup_count", "do": "dropoff_mean", "do_n": "dropoff_count",
    "pair": "pair_mean", "pair_n": "pair_count", "pace": "pace",
}  # fmt: skip


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
    pair's length class (one of 16 quantile classes of the pairs' mean duration). Then every
    feature is a function of a few discrete keys, and `interaction_groups` says which features
    the trees may combine: the zone pair with the time block, the time with the zones'
    boroughs and service zones, the time with the length class. A model trained within these
    groups predicts from lookup tables (taxi.gbm_tables), filled from `tabulation_trips`.

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
        self.borough_of_ = _zone_codes(lookup, "Borough")
        self.service_of_ = _zone_codes(lookup, "service_zone")
        self.n_boroughs_ = lookup["Borough"].astype(str).nunique() + 1
        self.n_train_ = len(trips)
        keys = self._keys(trips)
        self.tables_ = self._fit_tables(keys, np.asarray(y, dtype=np.float64))
        if self.tabular:
            quantiles = np.arange(1, N_PAIR_LENGTH_CLASSES) / N_PAIR_LENGTH_CLASSES
            self.length_edges_ = np.quantile(self.tables_.pair_mean[keys.zone_pair], quantiles)
        head = self._keys(trips.iloc[:1])
        self.feature_names_ = np.array([*self._target_free(trips.iloc[:1], head), *self._encode(head, self.tables_)])
        return self

    def transform(self, trips: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "tables_")
        keys = self._keys(trips)
        return self._assemble(trips, keys, self._encode(keys, self.tables_))

    def fit_transform(self, trips: pd.DataFrame, y: np.ndarray | None = None, **fit_params: object) -> np.ndarray:
        """Fit on all rows, and return out-of-fold encodings for them."""
        from sklearn.model_selection import KFold  # only training needs it: keeps imports light

        self.fit(trips, y)
        if self.n_splits < 2:
            return self.transform(trips)
        keys = self._keys(trips)
        y = np.asarray(y, dtype=np.float64)
        encoded = {name: np.empty(len(trips), dtype=np.float32) for name in self._encode(keys.rows(slice(0, 1)), self.tables_)}
        for fit_rows, encode_rows in KFold(self.n_splits, shuffle=True, random_state=self.random_state).split(y):
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
        for column, seen in (("PULocationID", self.tables_.pickup_count), ("DOLocationID", self.tables_.dropoff_count)):
            slots = _zone_slot(trips[column].to_numpy(dtype=np.int64))
            counts[column] = int(((slots == 0) | (seen[slots] == 0)).sum())
        return counts

    def interaction_groups(self) -> tuple[FeatureGroup, ...] | None:
        """The feature groups a tabulated model is trained within (see the class docstring);
        None without `tabular` or with `use_trip_distance` (a distance is not a discrete key)."""
        check_is_fitted(self, "tables_")
        if not self.tabular or self.use_trip_distance:
            return None
        quarter_hour, day = KeyColumn("hour", 4.0, 96), KeyColumn("dow", 1.0, 7)
        n_services = self._n_services()
        return (
            FeatureGroup(
                "zone pair x time block",
                (*PAIR_FEATURES, "hour_block", "weekend"),
                (KeyColumn("pu_id", 1.0, N_ZONE_SLOTS), KeyColumn("do_id", 1.0, N_ZONE_SLOTS),
                 KeyColumn("hour_block", 1.0, 24 // HOUR_BLOCK_HOURS), KeyColumn("weekend", 1.0, 2)),
            ),
            FeatureGroup(
                "time x zone classes",
                (*TIME_FEATURES, *ZONE_CLASS_FEATURES),
                (quarter_hour, day, KeyColumn("pu_borough", 1.0, self.n_boroughs_), KeyColumn("do_borough", 1.0, self.n_boroughs_),
                 KeyColumn("pu_service", 1.0, n_services), KeyColumn("do_service", 1.0, n_services)),
            ),
            FeatureGroup(
                "time x pair length",
                (*TIME_FEATURES, "pair_length"),
                (quarter_hour, day, KeyColumn("pair_length", 1.0, N_PAIR_LENGTH_CLASSES)),
            ),
        )  # fmt: skip

    def tabulation_trips(self) -> pd.DataFrame:
        """Synthetic trips whose features cover the keys of `interaction_groups` that trips are
        likely to have: every zone pair seen in training at every time block, and every quarter
        hour of the week (and a missing time) with every pair of zone classes and every length
        class. Other keys (pairs never seen in training) are tabulated when first predicted."""
        check_is_fitted(self, "length_edges_")
        monday = np.datetime64("2021-01-04T00:00", "m")  # any Monday
        minute = np.timedelta64(1, "m")
        block_starts = [day * 1440 + block * HOUR_BLOCK_HOURS * 60 for day in (0, 5) for block in range(24 // HOUR_BLOCK_HOURS)]
        block_times = np.append(monday + np.asarray(block_starts) * minute, np.datetime64("NaT"))
        quarter_hours = np.append(monday + np.arange(7 * 96) * 15 * minute, np.datetime64("NaT"))
        seen = np.flatnonzero(self.tables_.pair_count > 0)
        zone_class = self.borough_of_ * self._n_services() + self.service_of_
        class_zones = np.unique(zone_class, return_index=True)[1]
        lengths = self._pair_length_classes(self.tables_.pair_mean)[seen]
        length_pairs = seen[np.unique(lengths, return_index=True)[1]]
        parts = [
            _trips_at(seen // N_ZONE_SLOTS, seen % N_ZONE_SLOTS, block_times),
            _trips_at(np.repeat(class_zones, len(class_zones)), np.tile(class_zones, len(class_zones)), quarter_hours),
            _trips_at(length_pairs // N_ZONE_SLOTS, length_pairs % N_ZONE_SLOTS, quarter_hours),
        ]
        return pd.concat(parts, ignore_index=True)

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("tabular", False)  # pickled before tabular features existed
        tables = state.get("tables_")
        if isinstance(tables, dict):  # pickled by taxi 0.1
            values = {name: tables.get(old) for old, name in _TABLES_0_1.items()}
            state["tables_"] = TargetTables(**{**values, "count_scale": float(values["count_scale"])})
        super().__setstate__(state)

    # --- internals ---------------------------------------------------------------------------

    def _n_services(self) -> int:
        return int(self.service_of_.max()) + 1

    def _pair_length_classes(self, pair_mean: np.ndarray) -> np.ndarray:
        """The length class (0 .. N_PAIR_LENGTH_CLASSES-1) of each zone pair's mean duration."""
        return np.searchsorted(self.length_edges_, pair_mean, side="right")

    def _keys(self, trips: pd.DataFrame) -> TripKeys:
        pickup = _zone_slot(trips["PULocationID"].to_numpy(dtype=np.int64))
        dropoff = _zone_slot(trips["DOLocationID"].to_numpy(dtype=np.int64))
        pickup_borough, dropoff_borough = self.borough_of_[pickup], self.borough_of_[dropoff]
        if "trip_distance" in trips:
            distance = trips["trip_distance"].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            distance = np.full(len(trips), np.nan)
        return TripKeys(
            pickup_zone=pickup,
            dropoff_zone=dropoff,
            pickup_borough=pickup_borough,
            dropoff_borough=dropoff_borough,
            zone_pair=pickup * N_ZONE_SLOTS + dropoff,
            borough_pair=pickup_borough * self.n_boroughs_ + dropoff_borough,
            distance=np.where((distance > 0) & (distance <= self.max_distance), distance, np.nan),
        )

    def _fit_tables(self, keys: TripKeys, y: np.ndarray) -> TargetTables:
        m = float(self.smoothing)
        nb = self.n_boroughs_
        mean = float(y.mean())
        slots = np.arange(N_ZONE_PAIRS)
        # Typical distance of a pair, shrunk towards its pickup zone's. Cross-fitted too: in
        # sample it would leak a rare pair's own ride distance.
        known = ~np.isnan(keys.distance)
        miles = keys.distance[known]
        mean_distance = float(miles.mean()) if known.any() else 0.0
        pickup_prior = np.full(N_ZONE_SLOTS, mean_distance)
        pickup_distance, _ = _smoothed_mean(keys.pickup_zone[known], miles, N_ZONE_SLOTS, pickup_prior, m)
        pair_distance, _ = _smoothed_mean(keys.zone_pair[known], miles, N_ZONE_PAIRS, pickup_distance[slots // N_ZONE_SLOTS], m)
        pickup_borough, _ = _smoothed_mean(keys.pickup_borough, y, nb, np.full(nb, mean), m)
        dropoff_borough, _ = _smoothed_mean(keys.dropoff_borough, y, nb, np.full(nb, mean), m)
        borough_pair, _ = _smoothed_mean(keys.borough_pair, y, nb * nb, np.full(nb * nb, mean), m)
        pickup, pickup_count = _smoothed_mean(keys.pickup_zone, y, N_ZONE_SLOTS, pickup_borough[self.borough_of_], m)
        dropoff, dropoff_count = _smoothed_mean(keys.dropoff_zone, y, N_ZONE_SLOTS, dropoff_borough[self.borough_of_], m)
        pair_prior = borough_pair[self.borough_of_[slots // N_ZONE_SLOTS] * nb + self.borough_of_[slots % N_ZONE_SLOTS]]
        pair, pair_count = _smoothed_mean(keys.zone_pair, y, N_ZONE_PAIRS, pair_prior, m)
        pace = None
        if self.use_trip_distance:
            # Minutes per mile of each pair, as a ratio of sums (robust to tiny distances),
            # shrunk by m miles at the global pace.
            pair_miles = np.bincount(keys.zone_pair[known], weights=miles, minlength=N_ZONE_PAIRS)
            pair_minutes = np.bincount(keys.zone_pair[known], weights=y[known], minlength=N_ZONE_PAIRS)
            overall_pace = pair_minutes.sum() / max(pair_miles.sum(), 1e-9)
            pace = (pair_minutes + m * overall_pace) / (pair_miles + m)
        return TargetTables(
            # Counts are rescaled to the full training set so out-of-fold values share its scale.
            count_scale=self.n_train_ / len(y),
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

    def _encode(self, keys: TripKeys, tables: TargetTables) -> dict[str, np.ndarray]:
        """The target-derived features, by feature name (float32 as each is made: the matrix's
        type, and half the memory while a month's columns wait to be assembled)."""
        scale = tables.count_scale
        pair_mean = tables.pair_mean[keys.zone_pair]
        encoded = {
            "te_pu": _f32(tables.pickup_mean[keys.pickup_zone]),
            "te_do": _f32(tables.dropoff_mean[keys.dropoff_zone]),
            "te_bpair": _f32(tables.borough_pair_mean[keys.borough_pair]),
            "te_pair": _f32(pair_mean),
            "n_pu": _f32(np.log1p(tables.pickup_count[keys.pickup_zone] * scale)),
            "n_do": _f32(np.log1p(tables.dropoff_count[keys.dropoff_zone] * scale)),
            "n_pair": _f32(np.log1p(tables.pair_count[keys.zone_pair] * scale)),
            "pair_dist": _f32(tables.pair_distance[keys.zone_pair]),
        }
        if tables.pace is not None:
            encoded["pace_x_dist"] = _f32(tables.pace[keys.zone_pair] * keys.distance)
        if self.tabular:
            encoded["pair_length"] = _f32(self._pair_length_classes(tables.pair_mean)[keys.zone_pair])
        return encoded

    def _target_free(self, trips: pd.DataFrame, keys: TripKeys) -> dict[str, np.ndarray]:
        """The features that do not depend on training durations, by feature name (float32)."""
        hour, day = _hour_and_day_of_week(trips["pickup_datetime"])
        if self.tabular:
            hour = np.floor(hour * 4) / 4
        features = {
            "hour": _f32(hour),
            "dow": _f32(day),
            "weekend": _f32(day >= 5),
            **({"hour_block": _f32(np.floor(hour / HOUR_BLOCK_HOURS))} if self.tabular else {}),
            "pu_id": _f32(keys.pickup_zone),
            "do_id": _f32(keys.dropoff_zone),
            "pu_borough": _f32(keys.pickup_borough),
            "do_borough": _f32(keys.dropoff_borough),
            "pu_service": _f32(self.service_of_[keys.pickup_zone]),
            "do_service": _f32(self.service_of_[keys.dropoff_zone]),
            "same_zone": _f32(keys.pickup_zone == keys.dropoff_zone),
            "same_borough": _f32(keys.pickup_borough == keys.dropoff_borough),
        }
        if self.use_trip_distance:
            features["dist"] = _f32(keys.distance)
        return features

    def _assemble(self, trips: pd.DataFrame, keys: TripKeys, encoded: dict[str, np.ndarray]) -> np.ndarray:
        columns = {**self._target_free(trips, keys), **encoded}
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


def _f32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _trips_at(pickup_zones: np.ndarray, dropoff_zones: np.ndarray, times: np.ndarray) -> pd.DataFrame:
    """Every pair (pickup_zones[i], dropoff_zones[i]) at every time, as trips without a distance."""
    return pd.DataFrame(
        {
            "pickup_datetime": np.tile(times, len(pickup_zones)).astype("datetime64[us]"),
            "PULocationID": np.repeat(pickup_zones, len(times)),
            "DOLocationID": np.repeat(dropoff_zones, len(times)),
            "trip_distance": np.nan,
        }
    )
