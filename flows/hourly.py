"""The hourly job's work on each incoming file, and how its run ends.

`predict_incoming_file` takes one file through claim -> run -> record -> release and says what
became of it (`Predicted`, `Skipped` or `Failed`); flows.inference.incoming_inference_flow
loops over the files with it (bookkeeping in taxi/incoming.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefect import Task, get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.states import State

from flows import incoming_tasks
from flows.policy import Retrying
from flows.reports.inference import monitoring_plot_description
from taxi import monitoring
from taxi.failed_files import UNFINISHED, Attempt, new_set_aside_id
from taxi.incoming import Claim, ClaimResult, IncomingFile, MalformedClaimError
from taxi.layout import SET_ASIDE_PREFIX, browser_url, incoming_name
from taxi.records import DoneRecord, FileFailed, HourlySummary, MonitoringPlot

ALREADY_PREDICTED = "already predicted"
BUSY = "being predicted by another run"


@dataclass(frozen=True)
class Predicted:
    input: str
    predictions: str  # the predictions' s3:// URI


@dataclass(frozen=True)
class Skipped:
    input: str
    reason: str


@dataclass(frozen=True)
class Failed:
    input: str
    error: str
    failures: int | None  # failed runs so far; None when they could not be counted
    set_aside: str | None  # where this run moved the file; None if it did not


FileOutcome = Predicted | Skipped | Failed


@dataclass(frozen=True)
class HourlyRun:
    """What every file of one hourly run shares: the run, its model version, the files done
    before it started, and its bookkeeping tasks (with the run's retries)."""

    run: str
    model_version: str
    done: set[str]  # incoming names with a done-record
    set_aside_after: int
    claim_file: Task[[IncomingFile, str], ClaimResult]
    record_attempt: Task[[IncomingFile, str, int], Attempt]
    record_done: Task[[IncomingFile, str, str, str], DoneRecord]
    release_claim: Task[[IncomingFile, str], bool]
    record_failure: Task[[IncomingFile, str, str], int]
    set_aside: Task[[IncomingFile, str], str | None]

    @classmethod
    def start(
        cls, run: str, model_version: str, done: set[str], set_aside_after: int, retrying: Retrying
    ) -> HourlyRun:
        return cls(
            run,
            model_version,
            done,
            set_aside_after,
            claim_file=retrying(incoming_tasks.claim_file),
            record_attempt=retrying(incoming_tasks.record_attempt),
            record_done=retrying(incoming_tasks.record_done),
            release_claim=retrying(incoming_tasks.release_claim),
            record_failure=retrying(incoming_tasks.record_failure),
            set_aside=retrying(incoming_tasks.set_aside),
        )


def predict_incoming_file(
    file: IncomingFile, job: HourlyRun, predict: Callable[[IncomingFile], State[str]]
) -> FileOutcome:
    """Claim `file`, predict it (`predict`: its inference_flow run, as a final state), record
    it done, and release the claim. A failure at any step from the claim on is the file's
    (`Failed`: counted, and on the job's `set_aside_after`-th failed run the file is set
    aside), never the run's: the other files go on."""
    if incoming_name(file.key) in job.done:
        return Skipped(file.key, ALREADY_PREDICTED)
    try:
        claimed = job.claim_file(file, job.run)
    except Exception as exception:  # noqa: BLE001 (one file's failure, its claim's included, must not stop the others)
        error = f"could not claim it: {type(exception).__name__}: {exception}"
        # A malformed claim says nothing about the file, which the next run claims afresh.
        return _failed(
            file, error, job, may_set_aside=not isinstance(exception, MalformedClaimError)
        )
    if claimed.outcome is not Claim.CLAIMED:
        return Skipped(file.key, ALREADY_PREDICTED if claimed.outcome is Claim.DONE else BUSY)
    try:
        return _predict_claimed(file, job, predict)
    finally:
        if claimed.etag is not None:  # a claim this run took always has one
            _release(job.release_claim, file, claimed.etag)


def _predict_claimed(
    file: IncomingFile, job: HourlyRun, predict: Callable[[IncomingFile], State[str]]
) -> FileOutcome:
    """Predict a file this run holds the claim on and record it done; or count its failure. The
    attempt is counted first, so that a run that dies on the file has counted it too; a file
    whose earlier runs died on it `set_aside_after` times is set aside without a try."""
    try:
        attempt = job.record_attempt(file, job.run, job.set_aside_after)
    except Exception as exception:  # noqa: BLE001 (uncounted, a crash on it would go unnoticed)
        return _failed(
            file, f"could not count the attempt: {type(exception).__name__}: {exception}", job
        )
    if attempt.unfinished and attempt.failures >= job.set_aside_after:
        return _set_aside_after_crashes(file, job, attempt.failures)
    try:
        state = predict(file)
        if state.is_completed():
            uri = state.result()
            job.record_done(file, uri, job.model_version, job.run)
            _forget_failures(file)
            return Predicted(file.key, uri)
        error = state.message or state.name
    except Exception as exception:  # noqa: BLE001 (one file's failure must not stop the others)
        error = f"{type(exception).__name__}: {exception}"
    return _failed(file, error, job)


def _failed(file: IncomingFile, error: str, job: HourlyRun, may_set_aside: bool = True) -> Failed:
    """Count a failed run on `file`; on the `set_aside_after`-th (unless not `may_set_aside`),
    move it under failed/ so that later runs no longer try it (and no longer fail on it)."""
    failures: int | None = None
    moved_to: str | None = None
    try:
        failures = job.record_failure(file, error, job.run)
        if may_set_aside and failures >= job.set_aside_after:
            moved_to = job.set_aside(file, new_set_aside_id())
    except Exception as bookkeeping:  # noqa: BLE001 (the file stays and is retried next run)
        get_run_logger().warning(
            "Could not count or set aside the failure of %s: %s", file.key, bookkeeping
        )
    return Failed(file.key, error, failures, moved_to)


def _set_aside_after_crashes(file: IncomingFile, job: HourlyRun, failures: int) -> Failed:
    """Set aside a file whose last run died on it, its `failures`-th failure."""
    moved_to: str | None = None
    try:
        moved_to = job.set_aside(file, new_set_aside_id())
    except Exception as error:  # noqa: BLE001 (the file stays; the next run sets it aside)
        get_run_logger().warning("Could not set %s aside: %s", file.key, error)
    return Failed(file.key, UNFINISHED, failures, moved_to)


def _forget_failures(file: IncomingFile) -> None:
    """A file that succeeds after failing starts its count again if it ever fails later."""
    try:
        incoming_tasks.clear_failures(file)
    except Exception as error:  # noqa: BLE001 (bookkeeping only: the file is predicted)
        get_run_logger().warning("Could not clear the failure count of %s: %s", file.key, error)


def _release(release_claim: Task[[IncomingFile, str], bool], file: IncomingFile, etag: str) -> None:
    """Release this run's claim (ETag `etag`); if that fails too, the claim expires on its own
    (taxi.incoming.CLAIM_TTL)."""
    try:
        release_claim(file, etag)
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning(
            "Could not release the claim on %s (it expires by itself): %s", file.key, error
        )


def hourly_summary(outcomes: list[FileOutcome], model_version: str, signed: bool) -> HourlySummary:
    """The run's summary: each file's outcome, by kind, in the order of the files."""
    failed: list[FileFailed] = [
        {"input": o.input, "error": o.error, "failures": o.failures, "set_aside": o.set_aside}
        for o in outcomes
        if isinstance(o, Failed)
    ]
    return {
        "model_version": model_version,
        "model_signed": signed,
        "files": len(outcomes),
        "predicted": [
            {"input": o.input, "predictions": o.predictions}
            for o in outcomes
            if isinstance(o, Predicted)
        ],
        "skipped": [
            {"input": o.input, "reason": o.reason} for o in outcomes if isinstance(o, Skipped)
        ],
        "failed": failed,
        "set_aside": [
            {"input": f["input"], "moved_to": f["set_aside"]} for f in failed if f["set_aside"]
        ],
        "monitoring_plot": None,
    }


def refresh_monitoring_plot(
    retrying: Retrying, object_url_template: str | None
) -> MonitoringPlot | None:
    """Redraw the plot of the newest monitoring records unless it was drawn less than
    taxi.monitoring.PLOT_REDRAW_INTERVAL ago, and link it; a failure here is only logged (the
    files are predicted and recorded)."""
    try:
        plot = retrying(incoming_tasks.refresh_monitoring_plot)(
            unless_newer_than=monitoring.PLOT_REDRAW_INTERVAL
        )
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning("Could not refresh the monitoring plot: %s", error)
        return None
    if plot is None:
        return None
    create_link_artifact(
        key="taxi-monitoring-plot",
        link=browser_url(plot["uri"], object_url_template),
        link_text=plot["uri"],
        description=monitoring_plot_description(plot),
    )
    return plot


class IncomingFilesFailed(RuntimeError):  # noqa: N818 (a public name since 0.1)
    """Some incoming files could not be predicted; the others were. `summary` has the lists."""

    def __init__(self, summary: HourlySummary):
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
        files = summary["files"]
        super().__init__(
            f"{len(failed)} of {files} incoming file(s) failed and {retried}: {listed}{more}"
        )


def end_run(summary: HourlySummary, set_aside_after: int) -> None:
    """A file that fails is retried by the next runs, which stay Completed (the report and the
    log list it), until its `set_aside_after`-th failed run sets it aside: that run ends
    Failed (IncomingFilesFailed), so the failed-run automation alerts once per file, not every
    hour. A failure that could not even be counted fails the run at once, since it would never
    be set aside."""
    if summary["set_aside"] or any(f["failures"] is None for f in summary["failed"]):
        raise IncomingFilesFailed(summary)
    if summary["failed"]:
        get_run_logger().warning(
            "%d file(s) failed and will be retried next run; a file is set aside, failing the run, after %d failed runs",
            len(summary["failed"]),
            set_aside_after,
        )
