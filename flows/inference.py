"""The batch inference flows.

- `inference_flow`: load a model version, process one trip file, predict, store.
- `incoming_inference_flow`: the hourly job. Predicts every file under `incoming/` that has
  not been predicted yet, one `inference_flow` run per file, and records each file done only
  once its predictions are stored (bookkeeping in taxi/incoming.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from flows import tasks
from flows.processing import process_inference_data_flow
from flows.reports import object_link, table_cell
from taxi import monitoring, monitoring_report
from taxi.incoming import Claim, IncomingFile
from taxi.layout import INCOMING_PREFIX, SET_ASIDE_PREFIX, browser_url, incoming_name, s3_uri
from taxi.pipeline import predictions_frame
from taxi.settings import Settings
from taxi.storage.registry import LoadedModel

DEFAULT_INCOMING_PREFIX = INCOMING_PREFIX
P = ParamSpec("P")
R = TypeVar("R")

# The model the hourly job loaded and verified at its start, lent to the inference_flow run of
# each of its files, which would otherwise download, verify and unpickle the same version
# again. A context variable rather than a flow parameter (parameters go to the Prefect API) or
# a global (overlapping runs in one process each keep their own).
_run_model: ContextVar[LoadedModel | None] = ContextVar("taxi_run_model", default=None)


@flow(name="taxi-inference", version=tasks.VERSION, log_prints=True)
def inference_flow(input_path: str, model_version: str = "latest", output_name: str | None = None) -> str:
    """Predict the duration of every trip of one TLC trip file and store the predictions as one
    parquet object, predictions/<output_name>/<version>.parquet, with a monitoring record.

    Args:
        input_path: The trip file: an s3:// URI, an https:// URL or a local path (a
            deployment's run: only s3:// in the project's bucket(s) or https://).
        model_version: "latest" (the promoted model) or a model version id.
        output_name: Folder of the predictions under predictions/ (default: the input's file name).

    Returns the predictions' s3:// URI."""
    logger = get_run_logger()
    settings = Settings.from_env()
    tasks.check_sources(settings, input_path)
    signed = tasks.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    thresholds = monitoring.drift_thresholds(settings.drift_thresholds)  # a bad setting fails before any work
    retrying = tasks.io_retries(settings)
    loaded = _model(model_version, retrying)
    processed = process_inference_data_flow(input_path, loaded.vectorizer)
    unknown = loaded.vectorizer.unknown_counts(processed.trips)
    if any(unknown.values()):
        logger.warning("Values not seen in training (predicted with the model's fallback for unknowns): %s", unknown)
    predicted_minutes = tasks.predict(loaded.model, processed.X)
    predictions = predictions_frame(processed, predicted_minutes)
    uri = retrying(tasks.write_predictions)(predictions, input_path, loaded.version, output_name)
    # Inference keeps every trip in input order, so processed.trips is the input as loaded
    # (categories encoded, which the monitoring encodes the same way).
    record = tasks.monitor_batch(loaded.reference, processed.trips, predicted_minutes, input_path, loaded.version, thresholds)
    publish_monitoring_record(record, uri, retrying)
    create_link_artifact(
        key="taxi-predictions",
        link=browser_url(uri, settings.object_url_template),
        link_text=uri,
        description=f"Predictions for `{input_path}`",
    )
    create_markdown_artifact(
        key="taxi-inference-report",
        markdown=inference_report(
            input_path,
            uri,
            loaded.version,
            loaded.manifest.get("model_type", "linear"),
            len(predictions),
            unknown,
            settings.object_url_template,
            signed,
        ),
        description=f"{len(predictions):,} trips predicted with model {loaded.version}",
    )
    logger.info("Predicted %d trips from %s with model %s -> %s", len(predictions), input_path, loaded.version, uri)
    return uri


def _model(model_version: str, retrying: Callable[[Task[P, R]], Task[P, R]]) -> LoadedModel:
    """The model to predict with: the one the calling hourly run lent (`_lending`) when it is
    this version, else loaded and verified now."""
    lent = _run_model.get()
    if lent is not None and lent.version == model_version:
        get_run_logger().info("Model version %s as loaded and verified by the hourly run", lent.version)
        return lent
    return retrying(tasks.load_model)(model_version)


@contextmanager
def _lending(loaded: LoadedModel) -> Iterator[None]:
    """Within the block, an inference_flow run of `loaded.version` predicts with `loaded`."""
    token = _run_model.set(loaded)
    try:
        yield
    finally:
        _run_model.reset(token)


def publish_monitoring_record(record: dict[str, Any], predictions_uri: str, retrying: Callable[[Task[P, R]], Task[P, R]]) -> str:
    """Store the batch's monitoring record next to its predictions, show it as a table
    artifact, and emit taxi.drift.detected when a statistic is over its threshold."""
    logger = get_run_logger()
    record_uri = retrying(tasks.write_monitoring_record)(record, predictions_uri)
    verdict = "drift detected" if record["drift_detected"] else "no drift"
    if record["drift_statistics"] != "computed":
        verdict = "no drift statistics (model version without reference statistics)"
        logger.warning(
            "Model version %s has no reference statistics: no drift statistics for this batch", record["model_version"]
        )
    create_table_artifact(
        key="taxi-monitoring",
        table=monitoring_report.record_table(record),
        description=f"Monitoring of `{record['input']}`: {verdict}; realized RMSE {record['realized_rmse']}; record `{record_uri}`",
    )
    if record["drift_detected"]:
        logger.warning("Drift detected in %s: %s", record["input"], ", ".join(monitoring.drifted_statistics(record)))
        emit_event(**monitoring_report.drift_event(record, record_uri))
    logger.info("Monitoring record %s: %s, realized RMSE %s", record_uri, verdict, record["realized_rmse"])
    return record_uri


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
| model signature | {tasks.signing_line(signed)} |
| predictions | {object_link(uri, object_url_template)} |

Values not seen in training (predicted with the model's fallback for unknowns):

| column | trips |
|---|---:|
{unseen}
"""


class IncomingFilesFailed(RuntimeError):  # noqa: N818 (a public name since 0.1)
    """Some incoming files could not be predicted; the others were. `summary` has the lists."""

    def __init__(self, summary: dict[str, Any]):
        self.summary = summary
        failed = summary["failed"]
        listed = "; ".join(f"{f['input']}: {f['error']}" for f in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        aside = len(summary.get("set_aside", []))
        retried = (
            f"{len(failed) - aside} will be retried next run, {aside} set aside under {SET_ASIDE_PREFIX}"
            if aside
            else "will be retried next run"
        )
        super().__init__(f"{len(failed)} of {summary['files']} incoming file(s) failed and {retried}: {listed}{more}")


@flow(name="taxi-incoming-inference", version=tasks.VERSION, log_prints=True)
def incoming_inference_flow(prefix: str = DEFAULT_INCOMING_PREFIX, model_version: str = "latest") -> dict[str, Any]:
    """Predict every file under `prefix` in the bucket that has no done-record yet.

    Args:
        prefix: The folder of the bucket to watch, e.g. incoming/.
        model_version: "latest" (the promoted model) or a model version id, resolved once per run.

    Every file of one run is predicted with the same model version (`model_version` resolved
    once, at the start). A file that fails, at any step from its claim on, does not stop the
    others; it is listed and tried again by the next runs, which stay Completed, until the run
    that sets it aside after TAXI_SET_ASIDE_AFTER_FAILURES failed runs: that run ends Failed,
    and alerts, once. The run refuses to start (ConditionalWritesUnsupportedError) against an
    S3 server that ignores conditional writes, on which claims would not be exclusive.
    Returns {"model_version", "files", "predicted", "skipped", "failed"}.
    """
    logger = get_run_logger()
    settings = Settings.from_env()
    signed = tasks.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    retrying = tasks.io_retries(settings)
    run = str(flow_run.get_id() or "local")
    retrying(tasks.check_conditional_writes)()
    # Loaded (and verified) once here so a bad model fails the run before any file is touched;
    # each file's run then predicts with this very model (lent, not loaded again), so with this
    # exact version even if `latest` moves meanwhile.
    loaded = retrying(tasks.load_model)(model_version)
    version = loaded.version
    files = retrying(tasks.list_incoming)(prefix)
    done = retrying(tasks.list_processed)(prefix)
    claim_file, record_done = retrying(tasks.claim_file), retrying(tasks.record_done)
    release_claim = retrying(tasks.release_claim)
    record_failure, set_aside = retrying(tasks.record_failure), retrying(tasks.set_aside)
    summary: dict[str, Any] = {
        "model_version": version,
        "model_signed": signed,
        "files": len(files),
        "predicted": [],
        "skipped": [],
        "failed": [],
        "set_aside": [],
        "monitoring_plot": None,
    }
    for file in files:
        if incoming_name(file.key) in done:
            summary["skipped"].append({"input": file.key, "reason": "already predicted"})
            continue
        error: str | None = None
        etag: str | None = None  # of this run's claim on the file, once taken
        try:
            claimed = claim_file(file, run)
            if claimed.outcome is not Claim.CLAIMED:
                reason = "already predicted" if claimed.outcome is Claim.DONE else "being predicted by another run"
                summary["skipped"].append({"input": file.key, "reason": reason})
                continue
            etag = claimed.etag
            with _lending(loaded):
                state = inference_flow(s3_uri(settings.bucket, file.key), version, incoming_name(file.key), return_state=True)
            if state.is_completed():
                uri = state.result()
                record_done(file, uri, version, run)
                summary["predicted"].append({"input": file.key, "predictions": uri})
                _forget_failures(file)
            else:
                error = state.message or state.name
        except Exception as exception:  # noqa: BLE001 (one file's failure, its claim's included, must not stop the others)
            step = "" if etag else "could not claim it: "
            error = f"{step}{type(exception).__name__}: {exception}"
        try:
            if error is not None:
                summary["failed"].append(_failed(file, error, run, settings.set_aside_after_failures, record_failure, set_aside))
        finally:
            if etag is not None:
                _release(release_claim, file, etag)
    summary["set_aside"] = [{"input": f["input"], "moved_to": f["set_aside"]} for f in summary["failed"] if f["set_aside"]]
    for entry in summary["failed"]:
        logger.error("Could not predict %s: %s", entry["input"], entry["error"])
    if summary["predicted"]:  # new monitoring records: redraw the plot (nothing new, nothing to redraw)
        summary["monitoring_plot"] = _refresh_monitoring_plot(retrying, settings.object_url_template)
    logger.info(
        "Incoming files under %s: %d predicted, %d skipped, %d failed (model %s)",
        s3_uri(settings.bucket, prefix), len(summary["predicted"]), len(summary["skipped"]), len(summary["failed"]), version,
    )  # fmt: skip
    create_markdown_artifact(
        key="taxi-incoming-inference",
        markdown=_incoming_report(s3_uri(settings.bucket, prefix), summary, settings.object_url_template),
        description=f"Model {version}",
    )
    # A file that fails is retried by the next runs, which stay Completed (the report and the log
    # list it), until its `set_aside_after_failures`-th failed run sets it aside: that run ends
    # Failed, so the failed-run automation alerts once per file, not every hour. A failure that
    # could not even be counted fails the run at once, since it would never be set aside.
    if summary["set_aside"] or any(f["failures"] is None for f in summary["failed"]):
        raise IncomingFilesFailed(summary)
    if summary["failed"]:
        logger.warning(
            "%d file(s) failed and will be retried next run; a file is set aside, failing the run, after %d failed runs",
            len(summary["failed"]), settings.set_aside_after_failures,
        )  # fmt: skip
    return summary


def _failed(
    file: IncomingFile,
    error: str,
    run: str,
    set_aside_after: int,
    record_failure: Task[[IncomingFile, str, str], int],
    set_aside: Task[[IncomingFile], str],
) -> dict[str, Any]:
    """Count a failed run on `file`; on the `set_aside_after`-th, move it under failed/ so that
    later runs no longer try it (and no longer fail on it). Returns its summary entry:
    input, error, failures (runs failed so far) and set_aside (where it was moved, or None)."""
    entry: dict[str, Any] = {"input": file.key, "error": error, "failures": None, "set_aside": None}
    try:
        entry["failures"] = record_failure(file, error, run)
        if entry["failures"] >= set_aside_after:
            entry["set_aside"] = set_aside(file)
    except Exception as bookkeeping:  # noqa: BLE001 (the file stays and is retried next run)
        get_run_logger().warning("Could not count or set aside the failure of %s: %s", file.key, bookkeeping)
    return entry


def _forget_failures(file: IncomingFile) -> None:
    """A file that succeeds after failing starts its count again if it ever fails later."""
    try:
        tasks.clear_failures(file)
    except Exception as error:  # noqa: BLE001 (bookkeeping only: the file is predicted)
        get_run_logger().warning("Could not clear the failure count of %s: %s", file.key, error)


def _refresh_monitoring_plot(
    retrying: Callable[[Task[P, R]], Task[P, R]], object_url_template: str | None
) -> dict[str, Any] | None:
    """Redraw the plot of the newest monitoring records unless it was drawn less than
    taxi.monitoring.PLOT_REDRAW_INTERVAL ago, and link it; a failure here is only logged (the
    files are predicted and recorded)."""
    try:
        plot = retrying(tasks.refresh_monitoring_plot)(unless_newer_than=monitoring.PLOT_REDRAW_INTERVAL)
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning("Could not refresh the monitoring plot: %s", error)
        return None
    if plot is None:
        return None
    shows = (
        f"the newest {plot['records']} monitored batches"
        if plot["redrawn"]
        else f"the monitored batches as of {plot['drawn_at']}"
    )
    create_link_artifact(
        key="taxi-monitoring-plot",
        link=browser_url(plot["uri"], object_url_template),
        link_text=plot["uri"],
        description=f"Realized RMSE and drift over {shows}",
    )
    return plot


def _release(release_claim: Task[[IncomingFile, str], bool], file: IncomingFile, etag: str) -> None:
    """Release this run's claim (ETag `etag`); if that fails too, the claim expires on its own
    (taxi.incoming.CLAIM_TTL)."""
    try:
        release_claim(file, etag)
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning("Could not release the claim on %s (it expires by itself): %s", file.key, error)


def _incoming_report(where: str, summary: dict[str, Any], template: str | None = None) -> str:
    lines = [
        f"# Incoming files under `{where}`",
        "",
        f"Model version `{summary['model_version']}`: {len(summary['predicted'])} predicted, "
        f"{len(summary['skipped'])} skipped, {len(summary['failed'])} failed, {len(summary['set_aside'])} set aside.",
        "",
        f"Model signature: {tasks.signing_line(summary['model_signed'])}.",
        "",
        _plot_line(summary["monitoring_plot"]),
        "",
        "| file | result | details |",
        "|---|---|---|",
    ]
    lines += [f"| `{p['input']}` | predicted | {object_link(p['predictions'], template)} |" for p in summary["predicted"]]
    lines += [f"| `{f['input']}` | {_failure_outcome(f)} | {table_cell(f['error'])} |" for f in summary["failed"]]
    lines += [f"| `{s['input']}` | skipped | {s['reason']} |" for s in summary["skipped"]]
    return "\n".join(lines) + "\n"


def _plot_line(plot: dict[str, Any] | None) -> str:
    if plot is None:
        return "Monitoring plot: not redrawn by this run (no new monitoring records)."
    if not plot["redrawn"]:
        hours = monitoring.PLOT_REDRAW_INTERVAL.total_seconds() / 3600
        return (
            f"Monitoring plot (realized RMSE and drift, drawn at {plot['drawn_at']}; redrawn by the first run "
            f"that predicts a file {hours:g} hours after that): [{plot['uri']}]({plot['uri']})"
        )
    return f"Monitoring plot (realized RMSE and drift, newest {plot['records']} batches): [{plot['uri']}]({plot['uri']})"


def _failure_outcome(failed: dict[str, Any]) -> str:
    if failed.get("set_aside"):
        return f"**set aside** as `{failed['set_aside']}` after {failed['failures']} failed runs; not retried until moved back"
    runs = f"; failed runs so far: {failed['failures']}" if failed.get("failures") else ""
    return f"**failed** (retried next run{runs})"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run an inference flow once, outside any deployment.")
    parser.add_argument("input_path", nargs="?", help="a trip file; omit with --incoming")
    parser.add_argument("--model-version", default="latest")
    parser.add_argument(
        "--incoming", metavar="PREFIX", help=f"predict every new file under PREFIX (e.g. {DEFAULT_INCOMING_PREFIX})"
    )
    args = parser.parse_args()
    if args.incoming:
        print(incoming_inference_flow(args.incoming, args.model_version))
    elif args.input_path:
        print(inference_flow(args.input_path, args.model_version))
    else:
        parser.error("give an input path or --incoming PREFIX")


if __name__ == "__main__":
    main()
