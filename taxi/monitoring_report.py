"""Presenting monitoring records (taxi.monitoring): the table artifact's rows, the plot over
batches, and the Prefect event announcing drift. Pure: records in, rows, PNG bytes and event
arguments out."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from taxi.monitoring import drifted_statistics, statistics_by_name


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
