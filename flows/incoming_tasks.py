"""Prefect tasks around taxi/incoming.py, the hourly job's bookkeeping, and the monitoring plot
it redraws. Each is named, tagged and logs what it did; flows/hourly.py runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.policy import io_task
from taxi import failed_files, incoming, monitoring, monitoring_plot
from taxi.incoming import ClaimResult, IncomingFile
from taxi.layout import MONITORING_PLOT_KEY, MONITORING_PREFIX, is_monitoring_record
from taxi.records import DoneRecord, MonitoringPlot
from taxi.storage.errors import NotFoundError
from taxi.storage.objects import ObjectStore


@task(name="list-incoming", tags=["taxi", "io", "s3"], **io_task)
def list_incoming(prefix: str) -> list[IncomingFile]:
    return incoming.list_incoming(ObjectStore(), prefix)


@task(name="list-processed", tags=["taxi", "io", "s3"], **io_task)
def list_processed(prefix: str) -> set[str]:
    """Incoming names (taxi.layout.incoming_name) of the files under `prefix` already done."""
    return incoming.processed_names(ObjectStore(), prefix)


@task(name="check-conditional-writes", tags=["taxi", "io", "s3"], **io_task)
def check_conditional_writes() -> None:
    """Refuse (ConditionalWritesUnsupportedError, not retried) an S3 server whose conditional
    writes would not make claims exclusive."""
    objects = ObjectStore()
    if not incoming.check_conditional_writes(objects):
        get_run_logger().warning(
            "The S3 server at %s ignores If-Match on DELETE: releasing a claim relies on reading its ETag just before",
            objects.client.meta.endpoint_url,
        )


@task(name="claim-file", tags=["taxi", "io", "s3"], **io_task)
def claim_file(file: IncomingFile, owner: str) -> ClaimResult:
    return incoming.claim(ObjectStore(), file, owner, owner_ended=run_ended)


def run_ended(owner: str) -> bool:
    """Whether the Prefect API has the flow run `owner` (a claim's owner, as the bucket holds
    it) in a final state: Completed, Failed, Cancelled or Crashed (the zombie automation of
    deploy/automations.yaml marks a run whose process died). False when that cannot be told:
    not a run id, no such run, the API failing; the claim then waits out its time."""
    try:
        run_id = UUID(owner)
    except ValueError:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
    except ObjectNotFound:
        return False
    except Exception as error:  # noqa: BLE001 (the claim stays: the file waits, nothing is lost)
        get_run_logger().warning(
            "Could not read the state of the run holding a claim (%s): %s",
            type(error).__name__,
            error,
        )
        return False
    return state is not None and state.is_final()


@task(name="release-claim", tags=["taxi", "io", "s3"], **io_task)
def release_claim(file: IncomingFile, etag: str) -> bool:
    """Delete this run's claim on `file` if it is still the one it wrote (ETag `etag`)."""
    released = incoming.release(ObjectStore(), file, etag)
    if not released:
        get_run_logger().warning(
            "The claim on %s is no longer this run's (taken over after it expired): left alone",
            file.key,
        )
    return released


@task(name="record-done", tags=["taxi", "io", "s3"], **io_task)
def record_done(
    file: IncomingFile, predictions_uri: str, model_version: str, run: str
) -> DoneRecord:
    return incoming.record_done(ObjectStore(), file, predictions_uri, model_version, run)


@task(name="record-attempt", tags=["taxi", "io", "s3"], **io_task)
def record_attempt(file: IncomingFile, run: str, limit: int) -> failed_files.Attempt:
    return failed_files.record_attempt(ObjectStore(), file, run, limit)


@task(name="record-failure", tags=["taxi", "io", "s3"], **io_task)
def record_failure(file: IncomingFile, error: str, run: str) -> int:
    return failed_files.record_failure(ObjectStore(), file, error, run)


@task(name="clear-failures", tags=["taxi", "io", "s3"], **io_task)
def clear_failures(file: IncomingFile) -> None:
    failed_files.clear_failures(ObjectStore(), file)


@task(name="set-aside", tags=["taxi", "io", "s3"], **io_task)
def set_aside(file: IncomingFile, set_aside_id: str) -> str | None:
    """Move `file` under failed/<set_aside_id>/; the copy's URI, or None when a new upload
    replaced the file before it could be copied (then nothing is set aside)."""
    objects, logger = ObjectStore(), get_run_logger()
    moved = failed_files.set_aside(objects, file, set_aside_id)
    if moved.key is None:
        logger.warning(
            "Did not set %s aside: a new upload replaced it since this run listed it; the next run tries that one",
            objects.uri(file.key),
        )
        return None
    if moved.original_kept:
        logger.warning(
            "Set the failing content of %s aside as %s; a new upload replaced it meanwhile and stays, for the next run",
            objects.uri(file.key),
            objects.uri(moved.key),
        )
    else:
        logger.warning(
            "Set %s aside as %s: it failed too many runs",
            objects.uri(file.key),
            objects.uri(moved.key),
        )
    return objects.uri(moved.key)


@task(name="refresh-monitoring-plot", tags=["taxi", "io", "s3"], **io_task)
def refresh_monitoring_plot(
    newest: int = monitoring.PLOT_RECORDS, unless_newer_than: timedelta = timedelta(0)
) -> MonitoringPlot | None:
    """Redraw the monitoring plot from the `newest` batch records (by time written), unless it
    was drawn less than `unless_newer_than` ago. Returns its URI, whether this call redrew it,
    when it was drawn and how many records it shows (None when kept), or None while there are
    no records."""
    objects = ObjectStore()
    uri = objects.uri(MONITORING_PLOT_KEY)
    listing = objects.list_objects(MONITORING_PLOT_KEY)
    drawn = [item["LastModified"] for item in listing if item["Key"] == MONITORING_PLOT_KEY]
    if drawn and datetime.now(UTC) - drawn[0] < unless_newer_than:
        drawn_at = drawn[0].isoformat(timespec="seconds")
        return {"uri": uri, "redrawn": False, "drawn_at": drawn_at, "records": None}
    listed = [
        item
        for item in objects.list_objects(MONITORING_PREFIX)
        if is_monitoring_record(item["Key"])
    ]
    listed = sorted(listed, key=lambda item: (item["LastModified"], item["Key"]))[-newest:]
    records = []
    for item in listed:
        try:
            records.append(json.loads(objects.get(item["Key"])))
        except (
            NotFoundError,
            ValueError,
        ) as error:  # removed meanwhile, or not a record: leave it out
            get_run_logger().warning(
                "Left %s out of the monitoring plot: %s", objects.uri(item["Key"]), error
            )
    if not records:
        return None
    objects.put_verified(MONITORING_PLOT_KEY, monitoring_plot.monitoring_plot(records), "image/png")
    drawn_at = datetime.now(UTC).isoformat(timespec="seconds")
    return {"uri": uri, "redrawn": True, "drawn_at": drawn_at, "records": len(records)}
