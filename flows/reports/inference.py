"""The inference runs' reports: one file's run, and the hourly job's run over incoming/."""

from __future__ import annotations

from flows.reports.markdown import code, code_cell, object_link, signing_line, text
from taxi.monitoring import PLOT_REDRAW_INTERVAL
from taxi.records import FileFailed, HourlySummary, MonitoringPlot


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
    unseen = "\n".join(f"| {code_cell(column)} | {count:,} |" for column, count in unknown.items())
    return f"""# Inference run

| | |
|---|---|
| input | {code_cell(input_path)} |
| trips predicted | {rows:,} (every input trip, in input order) |
| model version | {code_cell(version)} ({model_type}) |
| model signature | {signing_line(signed)} |
| predictions | {object_link(uri, object_url_template)} |

Values not seen in training (predicted with the model's fallback for unknowns):

| column | trips |
|---|---:|
{unseen}
"""


def incoming_report(where: str, summary: HourlySummary, template: str | None = None) -> str:
    counts = (
        f"{len(summary['predicted'])} predicted, {len(summary['skipped'])} skipped, "
        f"{len(summary['failed'])} failed, {len(summary['set_aside'])} set aside."
    )
    lines = [
        f"# Incoming files under {code(where)}",
        "",
        f"Model version {code(summary['model_version'])}: {counts}",
        "",
        f"Model signature: {signing_line(summary['model_signed'])}.",
        "",
        _plot_line(summary["monitoring_plot"], template),
        "",
        "| file | result | details |",
        "|---|---|---|",
    ]
    for p in summary["predicted"]:
        lines.append(
            f"| {code_cell(p['input'])} | predicted | {object_link(p['predictions'], template)} |"
        )
    for f in summary["failed"]:
        lines.append(f"| {code_cell(f['input'])} | {_failure_outcome(f)} | {text(f['error'])} |")
    lines += [
        f"| {code_cell(s['input'])} | skipped | {text(s['reason'])} |" for s in summary["skipped"]
    ]
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
        return f"**set aside** as {code_cell(failed['set_aside'])} after {failed['failures']} failed runs; not retried until moved back"
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
