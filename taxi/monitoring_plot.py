"""The monitoring plot over batches (taxi.monitoring records in, PNG bytes out). The table
and the drift event that present one record are the flows' (flows/reports/)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from taxi.monitoring import statistics_by_name
from taxi.records import DriftStatistic, MonitoringRecord


def monitoring_plot(records: Sequence[MonitoringRecord]) -> bytes:
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
        drift.axhline(
            threshold, color="red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}"
        )
    flagged = [i for i, r in enumerate(records) if r.get("drift_detected")]
    if flagged:
        drift.scatter(
            flagged, [0] * len(flagged), marker="^", color="red", zorder=3, label="drift detected"
        )
    drift.set(ylabel="Jensen-Shannon distance", title="Drift against the model's training trips")
    drift.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    if drift.get_legend_handles_labels()[0]:  # records without drift statistics plot none
        drift.legend(fontsize=7, ncol=2, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _named_statistic(record: MonitoringRecord, name: str) -> DriftStatistic | None:
    return statistics_by_name(record).get(name)


def _statistic_value(record: MonitoringRecord, name: str) -> float:
    statistic = _named_statistic(record, name)
    return np.nan if not statistic or statistic.get("value") is None else float(statistic["value"])


def _threshold(record: MonitoringRecord, name: str) -> float | None:
    """The configured threshold (small batches are judged by a higher one: see `noise`)."""
    statistic = _named_statistic(record, name)
    return float(statistic["configured_threshold"]) if statistic else None


def _short_label(record: MonitoringRecord) -> str:
    name = str(record.get("input", "")).rstrip("/").rsplit("/", 1)[-1]
    return name if len(name) <= 40 else "..." + name[-37:]
