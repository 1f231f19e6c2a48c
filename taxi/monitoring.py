"""Watching a model in production: reference statistics, drift of each batch, realized error.

Pure functions: pandas and numpy in, plain JSON-serialisable dicts out. Storage, Prefect
artifacts and events are the callers' business.

- `reference_statistics`: a compact summary of the training trips (category counts and
  fixed-edge histograms of the model's inputs, of the target and of the model's predictions),
  stored with the model version. No raw trips: a few KB of counts.
- `batch_record`: one batch (an inference input and its predictions) compared with that
  reference: a drift statistic per monitored input and on the predictions, and the realized
  RMSE on the trips whose recorded duration passes the training filter.
- `monitoring_plot`: realized RMSE and the drift statistics over a list of batch records.

The drift statistic and its default threshold
---------------------------------------------
Every distribution (categories with an "other" bucket for values the reference never saw,
or numeric values binned on the reference's fixed edges) is compared with the
**Jensen-Shannon distance** (base 2, so 0 = identical and 1 = disjoint). It is symmetric,
bounded and finite when a bucket is empty on one side, so unseen categories need no epsilon
(the PSI blows up, or depends on its epsilon, exactly there: 250 zones, many rare). The
default threshold is **0.1** for every statistic, the conventional cut for this distance
(evidently's default too), and it fits the data. Measured with a linear model trained on
green 2021-01 (reference: its 73,908 training trips), on whole months:

==========================  ==========  ==========  =======================================
statistic                   2021-02     2021-03     2021-02 changed (must be flagged)
==========================  ==========  ==========  =======================================
pickup_hour                 0.019       0.023       clock +1 h: 0.115; half the 06-18 h
                                                    trips dropped: 0.127; clock +3 h: 0.30
day_of_week                 0.042       0.066       (March 2021 has five Mon-Wed: calendar)
pickup_zone                 0.056       0.064       half the trips of the 10 busiest pickup
                                                    zones dropped: 0.137
pickup_borough              0.026       0.030       half the Manhattan pickups dropped: 0.126
==========================  ==========  ==========  =======================================

(the measured values of every statistic are in docs/monitoring.md). Real consecutive months
stay below 0.07, while changes a person would want to hear about (a 1-hour clock shift, a
borough losing half its pickups) land above 0.11: 0.1 separates the two.

Small batches
-------------
A distance between a reference and a sample also measures sampling noise: a random
1,000-trip sample of February is at about 0.22 from January on the 250 pickup zones (0.06
for the 24 hours), although nothing changed. For k buckets, a batch of n rows and a
reference of N rows, the Jensen-Shannon divergence of two samples of one distribution is
about (k - 1) (1/n + 1/N) / (8 ln 2) bits (its chi-square approximation), so the distance
expected from noise alone is the square root of that: each statistic reports it as `noise`,
and is flagged only when its value exceeds both its threshold and twice its noise (four
times the divergence noise explains; for 6 degrees of freedom that happens by chance with
p < 0.001). For whole months the noise is 0.04 on the zones and the threshold decides; a
batch of a few hundred trips is flagged only for a change far larger than its noise.

What the batch is compared on
-----------------------------
The reference describes the trips the model was trained on (after the 1-60 minute filter)
and the model's predictions on them; a batch's inputs and predictions cover every trip of
the input (inference predicts every trip: no filter without a dropoff time). The filter
moves the training month itself by at most 0.034 (dropoff zone), far below the threshold.
The target is compared on the batch's trips that pass the training filter, as is the
realized RMSE. Time-of-day and day-of-week are compared with the training month's mix: a
batch that covers less than a week (an hour, a day) differs from it by construction; raise
or disable those thresholds (`{"day_of_week": 1.0}`) for such batches.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import root_mean_squared_error

from taxi.config import MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, TARGET_COLUMN
from taxi.settings import ALL_STATISTICS
from taxi.steps import compute_target, encode_categorical_columns, filter_outliers
from taxi.tlc import PICKUP
from taxi.zones import load_zone_lookup

REFERENCE_FORMAT = 1
STATISTIC = "jensen_shannon"
DEFAULT_THRESHOLD = 0.1
# A statistic is flagged only above this many times the distance sampling noise alone gives.
NOISE_MULTIPLIER = 2.0
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
# A record's `drift_statistics` for a model version stored without reference statistics.
NO_REFERENCE = "unavailable: the model version has no reference statistics (published before monitoring)"

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


def reference_statistics(trips: pd.DataFrame, predictions: np.ndarray, include_trip_distance: bool = False) -> dict[str, Any]:
    """Summary of the training trips for later comparison: category counts of the model's
    inputs, fixed-edge histograms of trip_distance (when `include_trip_distance`), of the
    target (trips' `duration` column, minutes) and of `predictions` (the model's minutes on
    these trips, in row order). JSON-serialisable; no trip is stored."""
    predictions = _aligned(predictions, trips, "predictions")
    if trips.empty:
        raise ValueError("reference statistics need at least one trip")
    if TARGET_COLUMN not in trips:
        raise ValueError(f"reference statistics need the training trips with their target column {TARGET_COLUMN!r}")
    values = _monitored_values(trips)
    features: dict[str, Any] = {name: _categorical_reference(values[name]) for name in CATEGORICAL_FEATURES}
    if include_trip_distance:
        features[TRIP_DISTANCE] = _numeric_reference(trips[TRIP_DISTANCE].to_numpy(dtype=np.float64))
    return {
        "format": REFERENCE_FORMAT,
        "statistic": STATISTIC,
        "rows": len(trips),
        "features": features,
        "target": _numeric_reference(trips[TARGET_COLUMN].to_numpy(dtype=np.float64)),
        "predictions": _numeric_reference(predictions),
    }


def _categorical_reference(keys: pd.Series) -> dict[str, Any]:
    counts = keys.value_counts(sort=True)
    kept = counts.iloc[:MAX_CATEGORIES]
    other = int(counts.iloc[MAX_CATEGORIES:].sum())
    return {"kind": "categorical", "counts": {str(key): int(n) for key, n in kept.items()}, OTHER: other}


def _numeric_reference(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
        edges = [float(edge) for edge in np.unique(np.round(quantiles, 6))]
    else:
        edges = []
    return {"kind": "numeric", "edges": edges, "counts": _histogram(values, edges)}


def _histogram(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts of (-inf, e1), [e1, e2), ..., [em, inf), then of missing (NaN) values."""
    finite = np.isfinite(values)
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values[finite], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [int(n) for n in counts] + [int((~finite).sum())]


# --- one batch ---------------------------------------------------------------------------------


def batch_record(
    reference: Mapping[str, Any] | None,
    trips_raw: pd.DataFrame,
    predictions: np.ndarray,
    input: str,
    model_version: str,
    thresholds: Mapping[str, float] | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """Monitoring record of one inference batch: `trips_raw` are every trip of the input as
    loaded (taxi.tlc.load_data, before any filter) and `predictions` the model's minutes for
    each of them, in order. `thresholds` overrides DEFAULT_THRESHOLDS (see
    `drift_thresholds`). JSON-serialisable; see the module docstring for the statistic,
    thresholds and noise.

    `reference` None (a model version published before reference statistics were stored):
    the record has the rows and the realized RMSE but no drift statistics, says so in
    `drift_statistics`, and `drift_detected` is False."""
    limits = drift_thresholds(thresholds)
    predictions = _aligned(predictions, trips_raw, "predictions")
    if reference is not None and reference.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"reference statistics of format {reference.get('format')!r}, expected {REFERENCE_FORMAT}")
    trips = trips_raw.reset_index(drop=True)
    realized = _realized_positions(trips)
    actual = compute_target(trips.iloc[realized])[TARGET_COLUMN].to_numpy(dtype=np.float64)
    realized_rmse = float(root_mean_squared_error(actual, predictions[realized])) if realized.size else None
    record: dict[str, Any] = {
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
    features: dict[str, Any] = {}
    for name, summary in reference["features"].items():
        if summary["kind"] == "categorical":
            features[name] = _compare_categorical(summary, values[name], limits[name])
        else:
            features[name] = _compare_numeric(summary, trips[name].to_numpy(dtype=np.float64), limits[name])
    seen_zones = [set(reference["features"][name]["counts"]) for name in ZONE_FEATURES]
    unknown_zone = ~values["pickup_zone"].isin(seen_zones[0]) | ~values["dropoff_zone"].isin(seen_zones[1])
    target_drift = _compare_numeric(reference["target"], actual, limits["target"]) if realized.size else None
    prediction_drift = _compare_numeric(reference["predictions"], predictions, limits["predictions"])
    statistics = [*features.values(), prediction_drift, *([target_drift] if target_drift else [])]
    record.update(
        unknown_zone_rows=int(unknown_zone.sum()),
        features=features,
        prediction_drift=prediction_drift,
        target_drift=target_drift,
        drift_detected=any(s["drift"] for s in statistics),
    )
    return record


def record_table(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A batch record as the rows of a table (a Prefect table artifact): the batch's figures,
    then one row per drift statistic with its value, threshold and verdict."""
    rows: list[dict[str, Any]] = [
        {"item": name, "value": record[name], "threshold": "", "drift": ""}
        for name in (
            "input",
            "model_version",
            "rows",
            "unknown_zone_rows",
            "realized_rmse",
            "realized_rows",
            "drift_statistics",
            "drift_detected",
        )
    ]
    for name, statistic in statistics_by_name(record).items():
        if statistic:
            rows.append(
                {
                    "item": f"{name} ({statistic['statistic']})",
                    "value": statistic["value"],
                    "threshold": statistic["threshold"],
                    "drift": statistic["drift"],
                }
            )
    return rows


def drifted_statistics(record: Mapping[str, Any]) -> list[str]:
    """Names of the statistics over their threshold in a batch record ("predictions" and
    "target" for the prediction and target drift)."""
    return [name for name, statistic in statistics_by_name(record).items() if statistic and statistic["drift"]]


def statistics_by_name(record: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | None]:
    """Every drift statistic of a batch record by its threshold name (None: not computed)."""
    return {**record["features"], "predictions": record.get("prediction_drift"), "target": record.get("target_drift")}


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
            raise ValueError(f"unknown drift statistic {name!r} in thresholds; known: {sorted(limits)} or {ALL_STATISTICS!r}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            raise ValueError(f"the threshold of {name!r} must be a number in (0, 1] (a Jensen-Shannon distance), got {value!r}")
        limits[name] = float(value)
    return limits


def _realized_positions(trips: pd.DataFrame) -> np.ndarray:
    """Positions of the trips the training filter keeps (1-60 minutes, recorded dropoff)."""
    kept = filter_outliers(compute_target(trips), MIN_DURATION_MINUTES, MAX_DURATION_MINUTES)
    return kept.index.to_numpy(dtype=np.int64)  # trips has a RangeIndex: labels are positions


def _compare_categorical(summary: Mapping[str, Any], keys: pd.Series, threshold: float) -> dict[str, Any]:
    categories = list(summary["counts"])
    expected = np.array([*summary["counts"].values(), summary[OTHER]], dtype=np.float64)
    batch = keys.value_counts()
    observed = batch.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    observed = np.append(observed, len(keys) - observed.sum())
    return _statistic(expected, observed, threshold)


def _compare_numeric(summary: Mapping[str, Any], values: np.ndarray, threshold: float) -> dict[str, Any]:
    expected = np.asarray(summary["counts"], dtype=np.float64)
    observed = np.asarray(_histogram(np.asarray(values, dtype=np.float64), summary["edges"]), dtype=np.float64)
    return _statistic(expected, observed, threshold)


def _statistic(expected: np.ndarray, observed: np.ndarray, threshold: float) -> dict[str, Any]:
    n_reference, n_batch = expected.sum(), observed.sum()
    """The distance, the threshold it is judged by (the configured one, raised to twice the
    sampling noise for small batches) and whether it is over it."""
    configured = {"configured_threshold": threshold}
    if n_batch == 0 or n_reference == 0:
        return {"statistic": STATISTIC, "value": None, "threshold": threshold, "drift": False, "noise": None, **configured}
    value = float(jensenshannon(expected / n_reference, observed / n_batch, base=2))
    buckets = int(np.count_nonzero(expected + observed))
    noise = math.sqrt(max(buckets - 1, 0) * (1 / n_batch + 1 / n_reference) / (8 * math.log(2)))
    effective = round(max(threshold, NOISE_MULTIPLIER * noise), 6)
    return {
        "statistic": STATISTIC,
        "value": round(value, 6),
        "threshold": effective,
        "drift": bool(value > effective),
        "noise": round(noise, 6),
        **configured,
    }


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
        raise ValueError(f"{what}: {values.size} values for {len(trips)} trips; give one per trip, in order")
    return values


# --- plot --------------------------------------------------------------------------------------


def monitoring_plot(records: Sequence[Mapping[str, Any]]) -> bytes:
    """PNG: realized RMSE (top) and each drift statistic with the configured thresholds
    (bottom), one point per batch record, in the order given (oldest first); batches with
    drift detected are marked on the axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display in workers and containers
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("monitoring_plot needs at least one batch record")
    positions = np.arange(len(records))
    labels = [_short_label(record) for record in records]
    figure, (error, drift) = plt.subplots(2, 1, figsize=(11, 7), dpi=100, sharex=True)
    rmse = [np.nan if r.get("realized_rmse") is None else r["realized_rmse"] for r in records]
    error.plot(positions, rmse, marker="o", color="#4c72b0")
    error.set(ylabel="realized RMSE (minutes)", title="Realized error (trips of 1-60 minutes)")
    names = sorted({name for r in records for name in r["features"]}) + ["predictions", "target"]
    for name in names:
        series = [_statistic_value(r, name) for r in records]
        if all(np.isnan(series)):
            continue
        drift.plot(positions, series, marker=".", label=name, linewidth=1)
    for threshold in sorted({_threshold(r, n) for r in records for n in names} - {None}):
        drift.axhline(threshold, color="red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    flagged = [i for i, r in enumerate(records) if r.get("drift_detected")]
    if flagged:
        drift.scatter(flagged, [0] * len(flagged), marker="^", color="red", zorder=3, label="drift detected")
    drift.set(ylabel="Jensen-Shannon distance", title="Drift against the model's training trips")
    drift.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    if drift.get_legend_handles_labels()[0]:  # records without drift statistics plot none
        drift.legend(fontsize=7, ncol=2, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _named_statistic(record: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return statistics_by_name(record).get(name)


def _statistic_value(record: Mapping[str, Any], name: str) -> float:
    statistic = _named_statistic(record, name)
    return np.nan if not statistic or statistic.get("value") is None else float(statistic["value"])


def _threshold(record: Mapping[str, Any], name: str) -> float | None:
    """The configured threshold (small batches are judged by a higher one: see `noise`)."""
    statistic = _named_statistic(record, name)
    return float(statistic["configured_threshold"]) if statistic else None


def _short_label(record: Mapping[str, Any]) -> str:
    name = str(record.get("input", "")).rstrip("/").rsplit("/", 1)[-1]
    return name if len(name) <= 40 else "..." + name[-37:]


# --- the drift event -------------------------------------------------------------------------

DRIFT_EVENT = "taxi.drift.detected"


def drift_event(record: Mapping[str, Any], record_uri: str | None = None) -> dict[str, Any]:
    """Keyword arguments for Prefect's `emit_event` announcing a batch with drift: the
    batch (its input and model version) is the resource, the model version a related
    resource, and the payload names the statistics over their threshold. The deploy
    automation `taxi-drift-detected` (deploy/automations.yaml) matches this event."""
    if not record.get("drift_detected"):
        raise ValueError(f"{record.get('input')!r}: no drift detected, so no drift event")
    input_, version = str(record["input"]), str(record["model_version"])
    return {
        "event": DRIFT_EVENT,
        "resource": {
            "prefect.resource.id": f"taxi.batch.{input_}",
            "prefect.resource.name": input_,
            "taxi.input": input_,
            "taxi.model-version": version,
        },
        "related": [
            {
                "prefect.resource.id": f"taxi.model-version.{version}",
                "prefect.resource.role": "model-version",
                "prefect.resource.name": version,
            }
        ],
        "payload": {
            "drifted": drifted_statistics(record),
            "rows": record["rows"],
            "realized_rmse": record.get("realized_rmse"),
            "record": record_uri,
        },
    }
