"""The batch inference flows.

- `inference_flow`: load a model version, process one trip file, predict, store.
- `incoming_inference_flow`: the hourly job. Predicts every file under `incoming/` that has
  not been predicted yet, one `inference_flow` run per file, and records each file done only
  once its predictions are stored (each file's work: flows/hourly.py; bookkeeping:
  taxi/incoming.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import State

from flows import hourly, incoming_tasks, policy, tasks
from flows.parameters import incoming_parameters
from flows.policy import Retrying
from flows.processing import process_inference_data_flow
from flows.reports.inference import incoming_report, inference_report
from flows.reports.monitoring import (
    drift_event,
    hourly_drift_event,
    monitoring_description,
    monitoring_table,
    monitoring_verdict,
)
from taxi import monitoring
from taxi.incoming import IncomingFile
from taxi.layout import INCOMING_PREFIX, browser_url, incoming_name, s3_uri
from taxi.pipeline import predict_processed
from taxi.records import HourlySummary, MonitoringRecord
from taxi.settings import Settings
from taxi.storage.registry import LoadedModel

DEFAULT_INCOMING_PREFIX = INCOMING_PREFIX

# The model the hourly job loaded and verified at its start, lent to the inference_flow run of
# each of its files, which would otherwise download, verify and unpickle the same version
# again. A context variable rather than a flow parameter (parameters go to the Prefect API) or
# a global (overlapping runs in one process each keep their own).
_run_model: ContextVar[LoadedModel | None] = ContextVar("taxi_run_model", default=None)
# The batches with drift of the hourly run's files, (record, record URI) each: the hourly run
# announces them in one drift event (one alert per run, not one per file).
_run_drift: ContextVar[list[tuple[MonitoringRecord, str]] | None] = ContextVar(
    "taxi_run_drift", default=None
)


@flow(name="taxi-inference", version=policy.VERSION, log_prints=True)
def inference_flow(
    input_path: str, model_version: str = "latest", output_name: str | None = None
) -> str:
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
    policy.s3_keys_from_blocks(settings)
    policy.check_sources(settings, input_path)
    signed = policy.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    thresholds = monitoring.drift_thresholds(
        settings.drift_thresholds
    )  # a bad setting fails before any work
    retrying = policy.io_retries(settings)
    loaded = _model(model_version, retrying)
    processed = process_inference_data_flow(input_path, loaded.vectorizer)
    unknown = loaded.vectorizer.unknown_counts(processed.trips)
    if any(unknown.values()):
        logger.warning(
            "Values not seen in training (predicted with the model's fallback for unknowns): %s",
            unknown,
        )
    result = predict_processed(processed, loaded.model, tasks.step_runner(settings))
    rows, version = len(result.predictions), loaded.version
    uri = retrying(tasks.write_predictions)(result.predictions, input_path, version, output_name)
    # Inference keeps every trip in input order, so processed.trips is the input as loaded
    # (categories encoded, which the monitoring encodes the same way).
    record = tasks.monitor_batch(
        loaded.reference, processed.trips, result.predicted_minutes, input_path, version, thresholds
    )
    publish_monitoring_record(record, uri, retrying)
    template = settings.object_url_template
    create_link_artifact(
        key="taxi-predictions",
        link=browser_url(uri, template),
        link_text=uri,
        description=f"Predictions for `{input_path}`",
    )
    model_type = loaded.manifest.get("model_type", "linear")
    create_markdown_artifact(
        key="taxi-inference-report",
        markdown=inference_report(
            input_path, uri, version, model_type, rows, unknown, template, signed
        ),
        description=f"{rows:,} trips predicted with model {version}",
    )
    logger.info("Predicted %d trips from %s with model %s -> %s", rows, input_path, version, uri)
    return uri


def _model(model_version: str, retrying: Retrying) -> LoadedModel:
    """The model to predict with: the one the calling hourly run lent (`_hourly_file`) when it is
    this version, else loaded and verified now."""
    lent = _run_model.get()
    if lent is not None and lent.version == model_version:
        get_run_logger().info(
            "Model version %s as loaded and verified by the hourly run", lent.version
        )
        return lent
    return retrying(tasks.load_model)(model_version)


@contextmanager
def _hourly_file(
    loaded: LoadedModel, drifted: list[tuple[MonitoringRecord, str]]
) -> Iterator[None]:
    """Within the block, an inference_flow run of `loaded.version` predicts with `loaded`, and
    adds its batch to `drifted` if it drifted instead of announcing it."""
    model, drift = _run_model.set(loaded), _run_drift.set(drifted)
    try:
        yield
    finally:
        _run_model.reset(model)
        _run_drift.reset(drift)


def publish_monitoring_record(
    record: MonitoringRecord, predictions_uri: str, retrying: Retrying
) -> str:
    """Store the batch's monitoring record next to its predictions, show it as a table
    artifact, and when a statistic is over its threshold announce it: with taxi.drift.detected,
    or through the calling hourly run, which announces all its files' drift at once."""
    logger = get_run_logger()
    record_uri = retrying(tasks.write_monitoring_record)(record, predictions_uri)
    if record["drift_statistics"] != "computed":
        version = record["model_version"]
        logger.warning(
            "Model version %s has no reference statistics: no drift statistics for this batch",
            version,
        )
    create_table_artifact(
        key="taxi-monitoring",
        table=monitoring_table(record),
        description=monitoring_description(record, record_uri),
    )
    if record["drift_detected"]:
        logger.warning(
            "Drift detected in %s: %s",
            record["input"],
            ", ".join(monitoring.drifted_statistics(record)),
        )
        hourly_drift = _run_drift.get()
        if hourly_drift is None:
            emit_event(**drift_event(record, record_uri))
        else:
            hourly_drift.append((record, record_uri))
    verdict = monitoring_verdict(record)
    logger.info(
        "Monitoring record %s: %s, realized RMSE %s", record_uri, verdict, record["realized_rmse"]
    )
    return record_uri


# Parameters are checked by flows.parameters, not by Prefect's validation, whose errors repeat
# the values given.
@flow(
    name="taxi-incoming-inference",
    version=policy.VERSION,
    log_prints=True,
    validate_parameters=False,
)
def incoming_inference_flow(
    prefix: str = DEFAULT_INCOMING_PREFIX, model_version: str = "latest"
) -> HourlySummary:
    """Predict every file under `prefix` in the bucket that has no done-record yet.

    Args:
        prefix: The folder of the bucket to watch: incoming/ or a folder below it, ending in /.
        model_version: "latest" (the promoted model) or a model version id, resolved once per run.

    Every file of one run is predicted with the same model version (`model_version` resolved
    once, at the start). A file that fails, at any step from its claim on, does not stop the
    others; it is listed and tried again by the next runs, which stay Completed, until the run
    that sets it aside after TAXI_SET_ASIDE_AFTER_FAILURES failed runs: that run ends Failed,
    and alerts, once. The run refuses to start (ConditionalWritesUnsupportedError) against an
    S3 server that ignores conditional writes, on which claims would not be exclusive.
    Returns {"model_version", "files", "predicted", "skipped", "failed"}.
    """
    parameters = incoming_parameters(prefix, model_version)  # before any work
    prefix, model_version = parameters.prefix, parameters.model_version
    logger = get_run_logger()
    settings = Settings.from_env()
    policy.s3_keys_from_blocks(settings)
    signed = policy.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    retrying = policy.io_retries(settings)
    retrying(incoming_tasks.check_conditional_writes)()
    # Loaded (and verified) once here so a bad model fails the run before any file is touched;
    # each file's run then predicts with this very model (lent, not loaded again), so with this
    # exact version even if `latest` moves meanwhile.
    loaded = retrying(tasks.load_model)(model_version)
    files = retrying(incoming_tasks.list_incoming)(prefix)
    done = retrying(incoming_tasks.list_processed)(prefix)
    run = str(flow_run.get_id() or "local")
    job = hourly.HourlyRun.start(
        run, loaded.version, done, settings.set_aside_after_failures, retrying
    )

    drifted: list[tuple[MonitoringRecord, str]] = []

    def predict(file: IncomingFile) -> State[str]:
        with _hourly_file(loaded, drifted):
            source = s3_uri(settings.bucket, file.key)
            return inference_flow(
                source, loaded.version, incoming_name(file.key), return_state=True
            )

    outcomes = [hourly.predict_incoming_file(file, job, predict) for file in files]
    summary = hourly.hourly_summary(outcomes, loaded.version, signed)
    where = s3_uri(settings.bucket, prefix)
    if drifted:
        emit_event(**hourly_drift_event(where, run, loaded.version, drifted))
    for entry in summary["failed"]:
        logger.error("Could not predict %s: %s", entry["input"], entry["error"])
    if summary[
        "predicted"
    ]:  # new monitoring records: redraw the plot (nothing new, nothing to redraw)
        summary["monitoring_plot"] = hourly.refresh_monitoring_plot(
            retrying, settings.object_url_template
        )
    counts = (len(summary["predicted"]), len(summary["skipped"]), len(summary["failed"]))
    logger.info(
        "Incoming files under %s: %d predicted, %d skipped, %d failed (model %s)",
        where,
        *counts,
        loaded.version,
    )
    create_markdown_artifact(
        key="taxi-incoming-inference",
        markdown=incoming_report(where, summary, settings.object_url_template),
        description=f"Model {loaded.version}",
    )
    hourly.end_run(summary, settings.set_aside_after_failures)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run an inference flow once, outside any deployment."
    )
    parser.add_argument("input_path", nargs="?", help="a trip file; omit with --incoming")
    parser.add_argument("--model-version", default="latest")
    parser.add_argument(
        "--incoming",
        metavar="PREFIX",
        help=f"predict every new file under PREFIX (e.g. {DEFAULT_INCOMING_PREFIX})",
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
