"""Every report the flows publish, rendered from their records: the markdown and table
artifacts of each run, and the payload of the drift event. Pure: records in, text, rows and
event arguments out; the flows create the artifacts and emit the event.

How the Prefect UI shows them (prefect-ui-library, as bundled with the pinned Prefect): a
markdown artifact's link shows its text as written, markup included, so link texts are plain
(no backticks); a table artifact's string cell is rendered as a markdown *document*, so a
lone "-" there is an empty bullet list, while None shows as an empty cell. So a missing
figure is None in table rows, and NOT_APPLICABLE (not "-") in the markdown tables too, whose
cells the UI renders inline but other viewers may not."""

from __future__ import annotations

from datetime import date
from typing import Any

from flows.policy import UNSIGNED_WARNING
from taxi.layout import browser_url
from taxi.monitoring import PLOT_REDRAW_INTERVAL, drifted_statistics, statistics_by_name
from taxi.records import (
    FileFailed,
    HourlySummary,
    IngestSummary,
    ManifestDetails,
    MonitoringPlot,
    MonitoringRecord,
    TableRows,
    TrainingSummary,
)

# --- pieces --------------------------------------------------------------------------------

# A markdown table's cell with no value (a figure that does not exist, e.g. the baseline's
# train RMSE).
NOT_APPLICABLE = "n/a"


def table_cell(text: str) -> str:
    """One table cell: no pipes or line breaks, and not a whole traceback."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= 300 else flat[:297] + "..."


def object_link(uri: str, template: str | None) -> str:
    """Markdown for an s3:// object: a link a browser opens (TAXI_OBJECT_URL_TEMPLATE: the S3
    UI of the stack, set in the work pool) named by the plain URI, or the URI as code when no
    template is set."""
    return f"[{uri}]({browser_url(uri, template)})" if template else f"`{uri}`"


def signing_line(signed: bool) -> str:
    """The run report's line on model signing."""
    if signed:
        return "signed and checked (HMAC-SHA256 of each manifest)"
    return f"**unsigned**: {UNSIGNED_WARNING}"


# --- inference -------------------------------------------------------------------------------


def inference_report(
    input_path: str,
    uri: str,
    version: str,
    model_type: str,
    rows: int,
    unknown: dict[str, int],
    object_url_template: str | None = None,
    signed: bool = True,
) -> str:
    unseen = "\n".join(f"| {column} | {count:,} |" for column, count in unknown.items())
    return f"""# Inference run

| | |
|---|---|
| input | `{input_path}` |
| trips predicted | {rows:,} (every input trip, in input order) |
| model version | `{version}` ({model_type}) |
| model signature | {signing_line(signed)} |
| predictions | {object_link(uri, object_url_template)} |

Values not seen in training (predicted with the model's fallback for unknowns):

| column | trips |
|---|---:|
{unseen}
"""


def monitoring_verdict(record: MonitoringRecord) -> str:
    if record["drift_statistics"] != "computed":
        return "no drift statistics (model version without reference statistics)"
    return "drift detected" if record["drift_detected"] else "no drift"


def monitoring_description(record: MonitoringRecord, record_uri: str) -> str:
    """The description of the monitoring table artifact."""
    return (
        f"Monitoring of `{record['input']}`: {monitoring_verdict(record)}; "
        f"realized RMSE {record['realized_rmse']}; record `{record_uri}`"
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


# --- the hourly job ----------------------------------------------------------------------------


def incoming_report(where: str, summary: HourlySummary, template: str | None = None) -> str:
    counts = (
        f"{len(summary['predicted'])} predicted, {len(summary['skipped'])} skipped, "
        f"{len(summary['failed'])} failed, {len(summary['set_aside'])} set aside."
    )
    lines = [
        f"# Incoming files under `{where}`",
        "",
        f"Model version `{summary['model_version']}`: {counts}",
        "",
        f"Model signature: {signing_line(summary['model_signed'])}.",
        "",
        _plot_line(summary["monitoring_plot"], template),
        "",
        "| file | result | details |",
        "|---|---|---|",
    ]
    for p in summary["predicted"]:
        lines.append(f"| `{p['input']}` | predicted | {object_link(p['predictions'], template)} |")
    for f in summary["failed"]:
        lines.append(f"| `{f['input']}` | {_failure_outcome(f)} | {table_cell(f['error'])} |")
    lines += [f"| `{s['input']}` | skipped | {s['reason']} |" for s in summary["skipped"]]
    return "\n".join(lines) + "\n"


def _plot_line(plot: MonitoringPlot | None, template: str | None) -> str:
    if plot is None:
        return "Monitoring plot: not redrawn by this run (no new monitoring records)."
    link = object_link(plot["uri"], template)
    if not plot["redrawn"]:
        hours = PLOT_REDRAW_INTERVAL.total_seconds() / 3600
        return (
            f"Monitoring plot (realized RMSE and drift, drawn at {plot['drawn_at']}; redrawn by "
            f"the first run that predicts a file {hours:g} hours after that): {link}"
        )
    return f"Monitoring plot (realized RMSE and drift, newest {plot['records']} batches): {link}"


def _failure_outcome(failed: FileFailed) -> str:
    if failed.get("set_aside"):
        return f"**set aside** as `{failed['set_aside']}` after {failed['failures']} failed runs; not retried until moved back"
    runs = f"; failed runs so far: {failed['failures']}" if failed.get("failures") else ""
    return f"**failed** (retried next run{runs})"


def monitoring_plot_description(plot: MonitoringPlot) -> str:
    """The description of the link artifact to the monitoring plot."""
    shows = (
        f"the newest {plot['records']} monitored batches"
        if plot["redrawn"]
        else f"the monitored batches as of {plot['drawn_at']}"
    )
    return f"Realized RMSE and drift over {shows}"


# --- training ----------------------------------------------------------------------------------


def metrics_table(result: TrainingSummary) -> TableRows:
    """The run's RMSE figures as rows of a table artifact: the new model, the champion, the
    course baseline."""
    new, baseline = f"new ({result['model_type']})", "course baseline (one-hot + linear)"
    rows = [
        _rmse_row(new, result["model_version"], result["rmse_train"], result["rmse_test"]),
        _rmse_row(baseline, None, None, result["rmse_test_course_baseline"]),
    ]
    if result["champion_version"]:
        champion = "champion (latest before this run)"
        row = _rmse_row(champion, result["champion_version"], None, result["champion_rmse_test"])
        rows.insert(1, row)
    return rows


def _rmse_row(
    model: str, version: str | None, train: float | None, test: float | None
) -> dict[str, Any]:
    """A row of the metrics table; what a model lacks (the baseline's version, a train RMSE
    not computed) is None, an empty cell in the UI."""
    rounded = None if train is None else round(train, 4)
    return {"model": model, "version": version, "rmse_train": rounded, "rmse_test": round(test, 4)}


def training_report(
    result: TrainingSummary, details: ManifestDetails, object_url_template: str | None = None
) -> str:
    """The run's markdown artifact: what was used, how it scored, what was decided, where it is."""
    test, sample = details["test_data"], details["training_sample"]
    train_rows = "\n".join(
        f"| train | `{m['source']}` | {m['rows_read']:,} | {m['rows_read'] - m['rows_kept']:,} | {m['rows_kept']:,} |"
        for m in sample["months"]
    )
    window = details["window"]
    window_line = (
        f"Window as of {window['as_of']} ({window['color']}): trained on "
        f"{', '.join(window['train_months'])}, tested on {window['test_month']}"
        f"{' (a backfill)' if window['backfill'] else ''}."
        if window
        else "Files given by the caller (no moving window)."
    )
    if sample["sampled"]:
        window_line += f" The model trained on a uniform sample of {sample['rows_trained']:,} of the kept trips."
    na = NOT_APPLICABLE
    champion = (
        f"`{result['champion_version']}` | {na} | {result['champion_rmse_test']:.4f}"
        if result["champion_version"]
        else f"none published yet | {na} | {na}"
    )
    promoted, kept = "**Promoted**: now `latest`.", "**Not promoted**: `latest` unchanged."
    verdict = promoted if result["promoted"] else kept
    distance = " with planned trip distance" if details["use_trip_distance"] else ""
    new_model = f"new: {details['model_type']}{distance}, {len(details['features'])} features"
    test_row = f"| test | `{test['uri']}` | {test['rows_read']:,} | {test['rows_read'] - test['rows_used']:,} | {test['rows_used']:,} |"
    new_row = f"| {new_model} | `{result['model_version']}` | {result['rmse_train']:.4f} | {result['rmse_test']:.4f} |"

    def link(uri: str) -> str:
        return object_link(uri, object_url_template)

    return f"""# Training run: model version `{result["model_version"]}`

{verdict} {result["promotion_reason"]}.

Model signature: {signing_line(result["model_signed"])}.

## Data

{window_line}

| | source | trips read | filtered out | kept (1-60 min) |
|---|---|---:|---:|---:|
{train_rows}
{test_row}

## RMSE (minutes)

| model | version | train | test |
|---|---|---:|---:|
{new_row}
| champion (current `latest`) | {champion} |
| course baseline (one-hot + linear) | {na} | {na} | {result["rmse_test_course_baseline"]:.4f} |

## Stored in S3

- Manifest: {link(result["manifest_uri"])}
- Evaluation plot (predicted vs actual, error by hour): {link(result["plot_uri"])}
- Test-set predictions: {link(result["predictions_uri"])}
"""


def backfill_row(as_of: date, result: TrainingSummary) -> dict[str, Any]:
    """One row of the backfill's table artifact: one training run as of `as_of`."""
    return {
        "as_of": as_of.isoformat(),
        "model_version": result["model_version"],
        "train_months": ", ".join(result["train_months"]),
        "test_month": result["test_month"],
        "rmse_train": round(result["rmse_train"], 4),
        "rmse_test": round(result["rmse_test"], 4),
        "promoted": result["promoted"],
    }


# --- ingestion ---------------------------------------------------------------------------------


def ingest_report(summary: IngestSummary) -> str:
    counts = (
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} skipped, "
        f"{len(summary['not_available'])} not available yet, {len(summary['failed'])} failed."
    )
    lines = [
        f"# Ingestion of {summary['color']} TLC months",
        "",
        f"Source: `{summary['source']}`. {counts}",
        "",
        "| month | result | details |",
        "|---|---|---|",
    ]
    for i in summary["ingested"]:
        lines.append(
            f"| {i['month']} | ingested | {i['rows']:,} trips, {i['bytes']:,} bytes: `{i['uri']}` |"
        )
    lines += [f"| {s['month']} | skipped | {s['reason']} |" for s in summary["skipped"]]
    for n in summary["not_available"]:
        lines.append(f"| {n['month']} | not available yet | {table_cell(n['reason'])} |")
    for f in summary["failed"]:
        lines.append(f"| {f['month']} | **failed** | {table_cell(f['error'])} |")
    lines += [
        f"| {m} | not attempted | an earlier month failed |" for m in summary["not_attempted"]
    ]
    for i in summary["ignored"]:
        lines.append(f"| {i['month']} | **ignored** | {table_cell(i['reason'])} |")
    return "\n".join(lines) + "\n"
