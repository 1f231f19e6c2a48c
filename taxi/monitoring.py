"""Watching a model in production: reference statistics, drift of each batch, realized error.

Pure functions: pandas and numpy in, plain JSON-serialisable dicts out. Storage, Prefect
artifacts and events are the callers' business; taxi.monitoring_plot draws the records, the
flows' reports (flows/reports/) show them as a table and announce drift.

- `reference_statistics`: a compact summary of the training trips (category counts and
  fixed-edge histograms of the model's inputs, of the target and of the model's predictions),
  stored with the model version. No raw trips: a few KB of counts.
- `batch_record`: one batch (an inference input and its predictions) compared with that
  reference: a drift statistic per monitored input and on the predictions, and the realized
  RMSE on the trips whose recorded duration passes the training filter.

Why the Jensen-Shannon distance, why 0.1, how small batches are judged (the `noise` of each
statistic) and what a batch is compared on, with the measured values: docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import root_mean_squared_error

from taxi.config import MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, TARGET_COLUMN
from taxi.drift import STATISTIC, compare_categorical, compare_numeric, histogram
from taxi.records import (
    CategoricalReference,
    DriftStatistic,
    FeatureReference,
    MonitoringRecord,
    NumericReference,
    ReferenceStatistics,
)
from taxi.settings import ALL_STATISTICS
from taxi.steps import compute_target, encode_categorical_columns, filter_outliers
from taxi.tlc import PICKUP
from taxi.zones import load_zone_lookup

REFERENCE_FORMAT = 1
DEFAULT_THRESHOLD = 0.1
# Bucket of values the reference never saw (or too rare to keep a bucket of their own).
OTHER = "other"
# Categories kept per feature (zone ids stop at 265): bounds a reference built from hostile
# data with millions of distinct values.
MAX_CATEGORIES = 300
# Numeric values: this many bins between the reference's quantiles, plus one for missing.
NUMERIC_BINS = 20
MISSING = "missing"
# The monitoring plot shows this many batch records at most, the newest: one hourly file a
# run gives about four days of history, and the plot stays readable and fast to redraw.
PLOT_RECORDS = 100
# The hourly job redraws the plot only once it is this old (reading the records back and
# drawing them took seconds, a good share of a run over one file): the plot may miss the
# batches of the last few hours.
PLOT_REDRAW_INTERVAL = timedelta(hours=6)
# A record's `drift_statistics` for a model version stored without reference statistics.
NO_REFERENCE = (
    "unavailable: the model version has no reference statistics (published before monitoring)"
)

CATEGORICAL_FEATURES = (
    "pickup_hour",
    "day_of_week",
    "pickup_zone",
    "dropoff_zone",
    "pickup_borough",
    "dropoff_borough",
    "passenger_count",
)
TRIP_DISTANCE = "trip_distance"
ZONE_FEATURES = ("pickup_zone", "dropoff_zone")
DEFAULT_THRESHOLDS: dict[str, float] = {
    **dict.fromkeys((*CATEGORICAL_FEATURES, TRIP_DISTANCE), DEFAULT_THRESHOLD),
    "predictions": DEFAULT_THRESHOLD,
    "target": DEFAULT_THRESHOLD,
}


# --- reference ---------------------------------------------------------------------------------


def reference_statistics(
    trips: pd.DataFrame, predictions: np.ndarray, include_trip_distance: bool = False
) -> ReferenceStatistics:
    """Summary of the training trips for later comparison: category counts of the model's
    inputs, fixed-edge histograms of trip_distance (when `include_trip_distance`), of the
    target (trips' `duration` column, minutes) and of `predictions` (the model's minutes on
    these trips, in row order). JSON-serialisable; no trip is stored."""
    predictions = _aligned(predictions, trips, "predictions")
    if trips.empty:
        raise ValueError("reference statistics need at least one trip")
    if TARGET_COLUMN not in trips:
        raise ValueError(
            f"reference statistics need the training trips with their target column {TARGET_COLUMN!r}"
        )
    values = _monitored_values(trips)
    features: dict[str, FeatureReference] = {
        name: _categorical_reference(values[name]) for name in CATEGORICAL_FEATURES
    }
    if include_trip_distance:
        features[TRIP_DISTANCE] = _numeric_reference(
            trips[TRIP_DISTANCE].to_numpy(dtype=np.float64)
        )
    return {
        "format": REFERENCE_FORMAT,
        "statistic": STATISTIC,
        "rows": len(trips),
        "features": features,
        "target": _numeric_reference(trips[TARGET_COLUMN].to_numpy(dtype=np.float64)),
        "predictions": _numeric_reference(predictions),
    }


def _categorical_reference(keys: pd.Series) -> CategoricalReference:
    counts = keys.value_counts(sort=True)
    kept = counts.iloc[:MAX_CATEGORIES]
    other = int(counts.iloc[MAX_CATEGORIES:].sum())
    counts_kept = {str(key): int(n) for key, n in kept.items()}
    return {"kind": "categorical", "counts": counts_kept, "other": other}


def _numeric_reference(values: np.ndarray) -> NumericReference:
    finite = values[np.isfinite(values)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
        edges = [float(edge) for edge in np.unique(np.round(quantiles, 6))]
    else:
        edges = []
    return {"kind": "numeric", "edges": edges, "counts": histogram(values, edges)}


# --- one batch ---------------------------------------------------------------------------------


def batch_record(
    reference: ReferenceStatistics | None,
    trips_raw: pd.DataFrame,
    predictions: np.ndarray,
    input: str,
    model_version: str,
    thresholds: Mapping[str, float] | None = None,
    created_at: datetime | None = None,
) -> MonitoringRecord:
    """Monitoring record of one inference batch: `trips_raw` are every trip of the input as
    loaded (taxi.load_data, before any filter) and `predictions` the model's minutes for
    each of them, in order. `thresholds` overrides DEFAULT_THRESHOLDS (see
    `drift_thresholds`). JSON-serialisable; the statistic, its thresholds and noise: taxi.drift.

    `reference` None (a model version published before reference statistics were stored):
    the record has the rows and the realized RMSE but no drift statistics, says so in
    `drift_statistics`, and `drift_detected` is False."""
    limits = drift_thresholds(thresholds)
    predictions = _aligned(predictions, trips_raw, "predictions")
    if reference is not None and reference.get("format") != REFERENCE_FORMAT:
        raise ValueError(
            f"reference statistics of format {reference.get('format')!r}, expected {REFERENCE_FORMAT}"
        )
    trips = trips_raw.reset_index(drop=True)
    realized = _realized_positions(trips)
    actual = compute_target(trips.iloc[realized])[TARGET_COLUMN].to_numpy(dtype=np.float64)
    realized_rmse = (
        float(root_mean_squared_error(actual, predictions[realized])) if realized.size else None
    )
    record: MonitoringRecord = {
        "input": input,
        "model_version": model_version,
        "rows": len(trips),
        "unknown_zone_rows": None,
        "drift_statistics": "computed",
        "features": {},
        "prediction_drift": None,
        "target_drift": None,
        "drift_detected": False,
        "realized_rmse": realized_rmse,
        "realized_rows": int(realized.size),
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
    }
    if reference is None:
        record["drift_statistics"] = NO_REFERENCE
        return record

    values = _monitored_values(trips)
    features: dict[str, DriftStatistic] = {}
    for name, summary in reference["features"].items():
        if summary["kind"] == "categorical":
            features[name] = compare_categorical(summary, values[name], limits[name])
        else:
            features[name] = compare_numeric(
                summary, trips[name].to_numpy(dtype=np.float64), limits[name]
            )
    seen_zones = [set(reference["features"][name]["counts"]) for name in ZONE_FEATURES]
    unknown_zone = ~values["pickup_zone"].isin(seen_zones[0]) | ~values["dropoff_zone"].isin(
        seen_zones[1]
    )
    target_drift = (
        compare_numeric(reference["target"], actual, limits["target"]) if realized.size else None
    )
    prediction_drift = compare_numeric(reference["predictions"], predictions, limits["predictions"])
    statistics = [*features.values(), prediction_drift, *([target_drift] if target_drift else [])]
    record.update(
        unknown_zone_rows=int(unknown_zone.sum()),
        features=features,
        prediction_drift=prediction_drift,
        target_drift=target_drift,
        drift_detected=any(s["drift"] for s in statistics),
    )
    return record


def drifted_statistics(record: MonitoringRecord) -> list[str]:
    """Names of the statistics over their threshold in a batch record ("predictions" and
    "target" for the prediction and target drift)."""
    return [
        name
        for name, statistic in statistics_by_name(record).items()
        if statistic and statistic["drift"]
    ]


def statistics_by_name(record: MonitoringRecord) -> dict[str, DriftStatistic | None]:
    """Every drift statistic of a batch record by its threshold name (None: not computed)."""
    return {
        **record["features"],
        "predictions": record.get("prediction_drift"),
        "target": record.get("target_drift"),
    }


def drift_thresholds(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The threshold of every statistic: DEFAULT_THRESHOLDS, then `overrides` (as
    Settings.drift_thresholds holds them: "default" sets every statistic, other names one
    each). Unknown names and values outside (0, 1] are errors naming the statistic."""
    overrides = dict(overrides or {})
    limits = dict(DEFAULT_THRESHOLDS)
    if ALL_STATISTICS in overrides:
        limits = dict.fromkeys(limits, overrides.pop(ALL_STATISTICS))
    for name, value in {**limits, **overrides}.items():
        if name not in limits:
            raise ValueError(
                f"unknown drift statistic {name!r} in thresholds; known: {sorted(limits)} or {ALL_STATISTICS!r}"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            raise ValueError(
                f"the threshold of {name!r} must be a number in (0, 1] (a Jensen-Shannon distance), got {value!r}"
            )
        limits[name] = float(value)
    return limits


def _realized_positions(trips: pd.DataFrame) -> np.ndarray:
    """Positions of the trips the training filter keeps (1-60 minutes, recorded dropoff)."""
    kept = filter_outliers(compute_target(trips), MIN_DURATION_MINUTES, MAX_DURATION_MINUTES)
    return kept.index.to_numpy(dtype=np.int64)  # trips has a RangeIndex: labels are positions


# --- shared ----------------------------------------------------------------------------------


def _monitored_values(trips: pd.DataFrame) -> dict[str, pd.Series]:
    """The categorical inputs of each trip as string keys; missing or unparseable -> "-1"."""
    encoded = encode_categorical_columns(trips, ("PULocationID", "DOLocationID", "passenger_count"))
    pickup = pd.to_datetime(trips[PICKUP])
    boroughs = _borough_of_zone()
    keys = {
        "pickup_hour": pickup.dt.hour,
        "day_of_week": pickup.dt.day_of_week,
        "pickup_zone": encoded["PULocationID"],
        "dropoff_zone": encoded["DOLocationID"],
        "passenger_count": encoded["passenger_count"],
    }
    values = {name: _as_keys(series) for name, series in keys.items()}
    values["pickup_borough"] = encoded["PULocationID"].map(boroughs).fillna(OTHER).astype(str)
    values["dropoff_borough"] = encoded["DOLocationID"].map(boroughs).fillna(OTHER).astype(str)
    return values


def _as_keys(series: pd.Series) -> pd.Series:
    return series.fillna(-1).astype(np.int64).astype(str)


def _borough_of_zone() -> dict[int, str]:
    lookup = load_zone_lookup()
    return dict(zip(lookup["LocationID"].astype(int), lookup["Borough"].astype(str), strict=True))


def _aligned(predictions: np.ndarray, trips: pd.DataFrame, what: str) -> np.ndarray:
    values = np.asarray(predictions, dtype=np.float64).ravel()
    if values.size != len(trips):
        raise ValueError(
            f"{what}: {values.size} values for {len(trips)} trips; give one per trip, in order"
        )
    return values
