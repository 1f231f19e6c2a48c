"""What the monitoring of a batch shows: its table artifact and the drift events."""

from __future__ import annotations

from typing import Any

from flows.reports.markdown import code, one_line
from taxi.monitoring import drifted_statistics, statistics_by_name
from taxi.records import MonitoringRecord, TableRows


def monitoring_verdict(record: MonitoringRecord) -> str:
    if record["drift_statistics"] != "computed":
        return "no drift statistics (model version without reference statistics)"
    return "drift detected" if record["drift_detected"] else "no drift"


def monitoring_description(record: MonitoringRecord, record_uri: str) -> str:
    """The description of the monitoring table artifact."""
    return (
        f"Monitoring of {code(record['input'])}: {monitoring_verdict(record)}; "
        f"realized RMSE {record['realized_rmse']}; record {code(record_uri)}"
    )


# The batch's own figures, in the table's order.
MONITORED_FIGURES = (
    "input model_version rows unknown_zone_rows realized_rmse realized_rows drift_statistics drift_detected"
).split()


def monitoring_table(record: MonitoringRecord) -> TableRows:
    """A batch record as the rows of a table (a Prefect table artifact): the batch's figures,
    then one row per drift statistic with its value, threshold and verdict."""
    rows: TableRows = [
        {"item": name, "value": record[name], "threshold": "", "drift": ""}
        for name in MONITORED_FIGURES
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


DRIFT_EVENT = "taxi.drift.detected"


def drift_event(record: MonitoringRecord, record_uri: str | None = None) -> dict[str, Any]:
    """Keyword arguments for Prefect's `emit_event` announcing a batch with drift: the
    batch (its input and model version) is the resource, the model version a related
    resource, and the payload names the statistics over their threshold. The deploy
    automation `taxi-drift-detected` (deploy/automations.yaml) matches this event."""
    if not record.get("drift_detected"):
        raise ValueError("no drift detected in this batch, so no drift event")
    input_, version = one_line(record["input"]), str(record["model_version"])
    return {
        "event": DRIFT_EVENT,
        "resource": {
            "prefect.resource.id": f"taxi.batch.{input_}",
            "prefect.resource.name": input_,
            "taxi.input": input_,
            "taxi.model-version": version,
        },
        "related": _model_version(version),
        "payload": {
            "drifted": drifted_statistics(record),
            "rows": record["rows"],
            "realized_rmse": record.get("realized_rmse"),
            "record": record_uri,
        },
    }


# An hourly run's drift event lists this many of its batches with drift, then their number.
MAX_EVENT_BATCHES = 20


def hourly_drift_event(
    where: str, run: str, model_version: str, drifted: list[tuple[MonitoringRecord, str]]
) -> dict[str, Any]:
    """Keyword arguments for `emit_event` announcing drift in one or more files of one hourly
    run, one event however many drifted (one alert, not one per file): the run's batches are
    the resource; the payload names the statistics over their threshold in any batch and lists
    the first MAX_EVENT_BATCHES batches (input, statistics, realized RMSE, record) and how many
    more there are. `drifted`: (record, record URI) of each batch with drift."""
    if not drifted:
        raise ValueError("no batch with drift, so no drift event")
    batches = [
        {
            "input": one_line(record["input"]),
            "drifted": drifted_statistics(record),
            "realized_rmse": record.get("realized_rmse"),
            "record": record_uri,
        }
        for record, record_uri in drifted[:MAX_EVENT_BATCHES]
    ]
    statistics = sorted({name for record, _ in drifted for name in drifted_statistics(record)})
    files = f"{len(drifted)} file{'s' if len(drifted) > 1 else ''}"
    name = f"{one_line(where)} ({files} with drift)"
    return {
        "event": DRIFT_EVENT,
        "resource": {
            "prefect.resource.id": f"taxi.hourly-run.{run}",
            "prefect.resource.name": name,
            "taxi.input": name,
            "taxi.model-version": model_version,
        },
        "related": _model_version(model_version),
        "payload": {
            "drifted": statistics,
            "rows": sum(record["rows"] for record, _ in drifted),
            "batches": batches,
            "more": len(drifted) - len(batches),
        },
    }


def _model_version(version: str) -> list[dict[str, str]]:
    return [
        {
            "prefect.resource.id": f"taxi.model-version.{version}",
            "prefect.resource.role": "model-version",
            "prefect.resource.name": version,
        }
    ]
