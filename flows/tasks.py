"""Prefect tasks wrapping the `taxi` steps.

I/O tasks (reading data, S3 reads and writes) retry with a growing delay when the failure
may pass: S3 or an HTTP source unreachable, timing out, answering 5xx or throttling
(`is_transient`). Anything else (bad input, a tampered or unloadable model, a 403, a missing
bucket) fails the same way every time, so retrying it only delays the error. The delays are
the run's (TAXI_IO_RETRY_DELAYS, read when a flow starts): flows call I/O tasks through
`io_retries`.

The settings (taxi.settings) are read inside each task that needs them. The model signing
key is resolved the same way, from a Prefect Secret block (named by TAXI_SIGNING_KEY_BLOCK)
or the TAXI_SIGNING_KEY variable, and handed to taxi.storage's ModelRegistry. It is never a
task or flow parameter, so it never reaches the Prefect API, and never logged. Without a key,
training and inference refuse to start unless TAXI_ALLOW_UNSIGNED=1 says to run unsigned
(`model_signing`, called first thing by those flows; their log and report then say so).
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import prefect.runtime.deployment
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

import taxi
import taxi.storage.predictions
from taxi import incoming, monitoring, monitoring_report
from taxi.errors import DeadlineError, DownloadError
from taxi.features import FeatureMatrix, Vectorizer
from taxi.incoming import ClaimResult, IncomingFile
from taxi.ingest import months_present
from taxi.layout import (
    LATEST_KEY,
    MONITORING_PLOT_KEY,
    MONITORING_PREFIX,
    data_key,
    is_monitoring_record,
    model_prefix,
    monitoring_record_key,
    parse_s3_uri,
)
from taxi.model import Model
from taxi.months import month_name
from taxi.settings import ALLOW_UNSIGNED_ENV, DEFAULT_IO_RETRY_DELAYS, SIGNING_KEY_BLOCK_ENV, SIGNING_KEY_ENV, Settings
from taxi.sources import check_source
from taxi.steps import StepRunner
from taxi.storage.manifests import UnsupportedModelError
from taxi.storage.objects import IntegrityError, NotFoundError, ObjectStore, StorageError, TransientStorageError
from taxi.storage.registry import ANY_CHAMPION, LoadedModel, ModelNotFoundError, ModelRegistry
from taxi.window import WindowPlan, plan_window

P = ParamSpec("P")
R = TypeVar("R")

VERSION = taxi.__version__
# Failures that may pass: S3 after botocore's own retries, a TLC download cut short, an HTTP
# source that cannot be reached or times out.
TRANSIENT_ERRORS = (TransientStorageError, DownloadError, ConnectionError, TimeoutError)
# HTTP answers that say "not now": timeout, too many requests, any 5xx.
TRANSIENT_HTTP_STATUSES = (408, 429)


def io_retry_delays() -> list[int]:
    """Seconds between I/O task retries, from TAXI_IO_RETRY_DELAYS (e.g. "1,2,4"; the tests
    shorten them so that fault tests finish quickly), read now."""
    return list(Settings.from_env().io_retry_delays)


def io_retries(settings: Settings) -> Callable[[Task[P, R]], Task[P, R]]:
    """Gives an I/O task the retry delays of `settings` (taken when a run starts)."""
    delays = list(settings.io_retry_delays)

    def with_run_retries(io: Task[P, R]) -> Task[P, R]:
        return io.with_options(retries=len(delays), retry_delay_seconds=delays)

    return with_run_retries


# What the log and the report of a run under TAXI_ALLOW_UNSIGNED=1 say.
UNSIGNED_WARNING = (
    f"Models are NOT signed and not checked ({ALLOW_UNSIGNED_ENV}=1): anyone who can write to the "
    "bucket can run code in the flows through a model file"
)


class SigningKeyMissingError(ValueError):
    """No model signing key is configured and running unsigned was not asked for."""


def signing_key(settings: Settings | None = None) -> bytes | None:
    """The model signing key: from the Prefect Secret block named by TAXI_SIGNING_KEY_BLOCK,
    else from TAXI_SIGNING_KEY. None only under TAXI_ALLOW_UNSIGNED=1 (models are then neither
    signed nor checked); without a key and without that opt-out, SigningKeyMissingError."""
    settings = settings or Settings.from_env()
    if settings.signing_key_block is None:
        if settings.signing_key is None and not settings.allow_unsigned:
            raise SigningKeyMissingError(
                f"no model signing key: set {SIGNING_KEY_BLOCK_ENV} to the Prefect Secret block holding it "
                f"(the compose stack's setup creates taxi-signing-key) or {SIGNING_KEY_ENV}; to run with unsigned "
                f"models instead, set {ALLOW_UNSIGNED_ENV}=1"
            )
        key = settings.signing_key
        return None if key is None else key.get_secret_value().encode()
    if settings.signing_key is not None:
        # Two sources could disagree between training and inference; make the choice explicit.
        raise ValueError(f"set {SIGNING_KEY_BLOCK_ENV} or {SIGNING_KEY_ENV}, not both")
    from prefect.blocks.system import Secret

    value = Secret.load(settings.signing_key_block).get()
    if not isinstance(value, str) or not value:
        raise ValueError(f"the Secret block {settings.signing_key_block!r} must hold a non-empty string (the signing key)")
    return value.encode()


def model_signing(settings: Settings) -> bool:
    """Called first by the training and inference flows: fails the run at once when no signing
    key is configured (and running unsigned was not asked for), and logs the opt-out when it
    is used. True if models are signed and checked."""
    if signing_key(settings) is not None:
        return True
    get_run_logger().warning(UNSIGNED_WARNING)
    return False


def signing_line(signed: bool) -> str:
    """The run report's line on model signing."""
    return "signed and checked (HMAC-SHA256 of each manifest)" if signed else f"**unsigned**: {UNSIGNED_WARNING}"


def model_registry() -> ModelRegistry:
    """The registry in TAXI_BUCKET, with the signing key if one is configured."""
    settings = Settings.from_env()
    return ModelRegistry(ObjectStore(bucket=settings.bucket), signing_key=signing_key(settings))


def check_sources(settings: Settings, *sources: str | None) -> None:
    """Refuse, in a deployment's run, run parameters naming sources it may not read
    (taxi.sources.check_source): only s3:// URIs in the configured bucket(s) and https:// URLs,
    plus local paths if TAXI_ALLOW_LOCAL_SOURCES=true. Anyone who can start a deployment run
    could otherwise make the worker read its own files or the internal network. A flow called
    directly (quickstart, tests, notebooks) reads what its caller could read anyway: no check.
    Sources the flows make themselves (the window's months, the hourly job's files) are in
    the configured bucket."""
    if prefect.runtime.deployment.id is None:
        return
    for source in sources:
        if source is not None:
            check_source(source, settings.readable_buckets, settings.allow_local_sources)


def is_transient(error: BaseException) -> bool:
    """Whether the same call may succeed later; anything not known to be transient is not."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code in TRANSIENT_HTTP_STATUSES or error.code >= 500
    if isinstance(error, DeadlineError):
        return False  # each retry could hold the run for another whole deadline (taxi.sources)
    # Other URLErrors are urllib's "could not connect" (refused, unresolvable, timed out).
    return isinstance(error, (*TRANSIENT_ERRORS, urllib.error.URLError))


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry transient failures only (`is_transient`)."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 (classified here)
        return is_transient(error)
    return False


# DataFrames and matrices are passed in memory: hashing them for a cache key is wasted work.
pure_task = dict(cache_policy=NO_CACHE, version=VERSION)
# Called outside a flow (or not through io_retries), an I/O task retries with the defaults.
io_task = dict(
    cache_policy=NO_CACHE,
    version=VERSION,
    retries=len(DEFAULT_IO_RETRY_DELAYS),
    retry_delay_seconds=list(DEFAULT_IO_RETRY_DELAYS),
    retry_condition_fn=retry_if_transient,
)


# --- the processing steps (taxi.steps) ---------------------------------------------------


@task(name="load-data", tags=["taxi", "io"], **io_task)
def load_data(source: str) -> pd.DataFrame:
    trips = taxi.load_data(source)
    get_run_logger().info("Read %d trips (%s schema) from %s", len(trips), trips.attrs["schema"], source)
    return trips


@task(name="compute-target", tags=["taxi"], **pure_task)
def compute_target(trips: pd.DataFrame) -> pd.DataFrame:
    return taxi.compute_target(trips)


@task(name="filter-outliers", tags=["taxi"], **pure_task)
def filter_outliers(trips: pd.DataFrame) -> pd.DataFrame:
    kept = taxi.filter_outliers(trips)
    get_run_logger().info(
        "Kept %d of %d trips; filtered out %d outside 1-60 minutes", len(kept), len(trips), len(trips) - len(kept)
    )
    return kept


@task(name="encode-categorical-columns", tags=["taxi"], **pure_task)
def encode_categorical_columns(trips: pd.DataFrame) -> pd.DataFrame:
    return taxi.encode_categorical_columns(trips)


@task(name="extract-x-y", tags=["taxi"], **pure_task)
def extract_x_y(trips: pd.DataFrame, vectorizer: Vectorizer | None = None) -> tuple[FeatureMatrix, np.ndarray | None, Vectorizer]:
    return taxi.extract_x_y(trips, vectorizer)


# The task of each step; the order of the steps is taxi.steps'.
STEP_TASKS: dict[Callable[..., Any], Task[..., Any]] = {
    taxi.load_data: load_data,
    taxi.compute_target: compute_target,
    taxi.filter_outliers: filter_outliers,
    taxi.encode_categorical_columns: encode_categorical_columns,
    taxi.extract_x_y: extract_x_y,
}


def step_runner(settings: Settings) -> StepRunner:
    """Runs each processing step (and model fitting) as its task, loading (the I/O step) with
    the run's retries."""
    tasks_by_step = {**STEP_TASKS, taxi.train_model: train_model, taxi.load_data: io_retries(settings)(load_data)}

    def run_as_task(step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return tasks_by_step[step](*args, **kwargs)

    return run_as_task


# --- models --------------------------------------------------------------------------------


@task(name="train-model", tags=["taxi", "ml"], **pure_task)
def train_model(X: FeatureMatrix, y: np.ndarray, model_type: str = "linear", vectorizer: Vectorizer | None = None) -> Model:
    model = taxi.train_model(X, y, model_type, vectorizer)
    get_run_logger().info("Trained %s on %d trips x %d features", type(model).__name__, X.shape[0], X.shape[1])
    return model


@task(name="predict", tags=["taxi", "ml"], **pure_task)
def predict(model: Model, X: FeatureMatrix) -> np.ndarray:
    return taxi.predict(model, X)


@task(name="plan-training-window", tags=["taxi", "io", "s3"], **io_task)
def plan_training_window(color: str, as_of: date, train_months: int) -> WindowPlan:
    """The months a window run as of `as_of` trains and tests on, from the months in the bucket."""
    objects = ObjectStore(Settings.from_env().bucket)
    present = months_present(objects, color)
    get_run_logger().info("%s months in the bucket: %s", color, ", ".join(month_name(m) for m in sorted(present)) or "none")
    return plan_window(
        as_of, datetime.now(UTC).date(), color, present, train_months, lambda month: objects.uri(data_key(color, month))
    )


@task(name="evaluate-champion", tags=["taxi", "ml", "s3"], **io_task)
def evaluate_champion(test_trips: pd.DataFrame, y: np.ndarray) -> tuple[str | None, float | None]:
    """The current `latest` model's version and its RMSE on these trips, or (None, None)."""
    try:
        # With the signing key: a champion someone swapped in is refused before unpickling here too.
        champion = model_registry().load_model("latest")
    except ModelNotFoundError:
        get_run_logger().info("No published model yet: nothing to compare with")
        return None, None
    except IntegrityError as error:
        # An altered or unsigned champion (e.g. published before signing was turned on) is
        # not a model to keep: compare with nothing, so this signed model can replace it.
        get_run_logger().warning("The current latest model cannot be trusted, not comparing with it: %s", error)
        return None, None
    except UnsupportedModelError as error:
        # A champion in a retired format (e.g. a gbm saved before XGBoost) cannot be scored:
        # compare with nothing, so this run's model can replace it.
        get_run_logger().warning("The current latest model cannot be loaded, not comparing with it: %s", error)
        return None, None
    rmse = taxi.evaluate_model(champion.model, champion.vectorizer.transform(test_trips), y)
    get_run_logger().info("Champion %s on the same test trips: RMSE %.4f", champion.version, rmse)
    return champion.version, rmse


@task(name="save-model", tags=["taxi", "io", "s3"], **io_task)
def save_model(
    model: Model,
    vectorizer: Vectorizer,
    metrics: dict[str, float],
    details: dict[str, Any],
    promote: bool,
    attachments: dict[str, tuple[bytes, str]],
    champion: str | None = None,
) -> dict[str, Any]:
    """Store the model as a new version; with `promote`, make it `latest` unless another
    training moved `latest` away from `champion` (the version it was compared with; None:
    it was compared with none) meanwhile. The manifest returned says in `promoted` whether
    it is `latest` now."""
    registry = model_registry()
    objects = registry.objects
    # A retry after a failure midway starts a new version: the half-written one stays
    # without a manifest (never loadable) until delete_incomplete_versions removes it.
    # A training that compared itself with no model (none yet, or one it could not trust)
    # may replace whatever `latest` names.
    manifest = registry.save_model(
        model, vectorizer, metrics=metrics, details=details, promote=promote, attachments=attachments,
        champion=ANY_CHAMPION if champion is None else champion,
    )  # fmt: skip
    logger = get_run_logger()
    for entry in manifest["objects"].values():
        logger.info("Wrote %s (%d bytes, sha256 %s)", objects.uri(entry["key"]), entry["bytes"], entry["sha256"][:12])
    signed = "signed" if registry.signing_key is not None else "not signed: no signing key configured"
    latest = objects.uri(LATEST_KEY)
    if manifest["promoted"]:
        logger.info("Published model version %s (%s); %s now points at it", manifest["version"], signed, latest)
    elif promote:
        logger.warning(
            "Stored model version %s (%s) without promoting it: another training moved %s away from %s, the "
            "version this one was compared with, meanwhile",
            manifest["version"], signed, latest, champion,
        )  # fmt: skip
    else:
        logger.info("Stored model version %s (%s) without promoting it; %s unchanged", manifest["version"], signed, latest)
    try:
        removed = registry.delete_incomplete_versions()
    except StorageError as error:
        # Housekeeping only: failing here must not fail (and so retry, and so republish) a
        # version that is already stored. The next training run tries again.
        logger.warning("Could not remove incomplete model versions: %s", error)
    else:
        if removed:
            logger.info("Removed incomplete model versions left by failed training runs: %s", removed)
    return manifest


@task(name="load-model", tags=["taxi", "io", "s3"], **io_task)
def load_model(version: str) -> LoadedModel:
    registry = model_registry()
    loaded = registry.load_model(version)
    checks = (
        "checksums and signature verified"
        if registry.signing_key is not None
        else "checksums verified; no signing key configured"
    )
    where = registry.objects.uri(model_prefix(loaded.version))
    get_run_logger().info("Loaded model version %s from %s (%s)", loaded.version, where, checks)
    return loaded


@task(name="write-predictions", tags=["taxi", "io", "s3"], **io_task)
def write_predictions(predictions: pd.DataFrame, source: str, version: str, name: str | None = None) -> str:
    uri = taxi.storage.predictions.write_predictions(ObjectStore(), predictions, source, version, name)
    get_run_logger().info("Wrote %d predictions to %s", len(predictions), uri)
    return uri


# --- incoming files (taxi.incoming) ------------------------------------------------------


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
    return incoming.claim(ObjectStore(), file, owner)


@task(name="release-claim", tags=["taxi", "io", "s3"], **io_task)
def release_claim(file: IncomingFile, etag: str) -> bool:
    """Delete this run's claim on `file` if it is still the one it wrote (ETag `etag`)."""
    released = incoming.release(ObjectStore(), file, etag)
    if not released:
        get_run_logger().warning("The claim on %s is no longer this run's (taken over after it expired): left alone", file.key)
    return released


@task(name="record-done", tags=["taxi", "io", "s3"], **io_task)
def record_done(file: IncomingFile, predictions_uri: str, model_version: str, run: str) -> dict[str, Any]:
    return incoming.record_done(ObjectStore(), file, predictions_uri, model_version, run)


@task(name="record-failure", tags=["taxi", "io", "s3"], **io_task)
def record_failure(file: IncomingFile, error: str, run: str) -> int:
    return incoming.record_failure(ObjectStore(), file, error, run)


@task(name="clear-failures", tags=["taxi", "io", "s3"], **io_task)
def clear_failures(file: IncomingFile) -> None:
    incoming.clear_failures(ObjectStore(), file)


@task(name="set-aside", tags=["taxi", "io", "s3"], **io_task)
def set_aside(file: IncomingFile) -> str:
    objects = ObjectStore()
    target = incoming.set_aside(objects, file)
    get_run_logger().warning("Set %s aside as %s: it failed too many runs", objects.uri(file.key), objects.uri(target))
    return objects.uri(target)


# --- monitoring (taxi.monitoring) ----------------------------------------------------------


@task(name="reference-statistics", tags=["taxi", "ml"], **pure_task)
def reference_statistics(train_trips: pd.DataFrame, predictions: np.ndarray, use_trip_distance: bool) -> dict[str, Any]:
    return monitoring.reference_statistics(train_trips, predictions, include_trip_distance=use_trip_distance)


@task(name="monitor-batch", tags=["taxi", "ml"], **pure_task)
def monitor_batch(
    reference: dict[str, Any] | None,
    trips: pd.DataFrame,
    predictions: np.ndarray,
    source: str,
    version: str,
    thresholds: dict[str, float],
) -> dict[str, Any]:
    return monitoring.batch_record(reference, trips, predictions, source, version, thresholds)


@task(name="write-monitoring-record", tags=["taxi", "io", "s3"], **io_task)
def write_monitoring_record(record: dict[str, Any], predictions_uri: str) -> str:
    objects = ObjectStore()
    key = monitoring_record_key(parse_s3_uri(predictions_uri)[1])
    objects.put_verified(key, json.dumps(record, indent=2).encode(), "application/json")
    return objects.uri(key)


@task(name="refresh-monitoring-plot", tags=["taxi", "io", "s3"], **io_task)
def refresh_monitoring_plot(
    newest: int = monitoring.PLOT_RECORDS, unless_newer_than: timedelta = timedelta(0)
) -> dict[str, Any] | None:
    """Redraw the monitoring plot from the `newest` batch records (by time written), unless it
    was drawn less than `unless_newer_than` ago. Returns its URI, whether this call redrew it,
    when it was drawn and how many records it shows (None when kept), or None while there are
    no records."""
    objects = ObjectStore()
    uri = objects.uri(MONITORING_PLOT_KEY)
    drawn = [item["LastModified"] for item in objects.list_objects(MONITORING_PLOT_KEY) if item["Key"] == MONITORING_PLOT_KEY]
    if drawn and datetime.now(UTC) - drawn[0] < unless_newer_than:
        return {"uri": uri, "redrawn": False, "drawn_at": drawn[0].isoformat(timespec="seconds"), "records": None}
    listed = [item for item in objects.list_objects(MONITORING_PREFIX) if is_monitoring_record(item["Key"])]
    listed = sorted(listed, key=lambda item: (item["LastModified"], item["Key"]))[-newest:]
    records = []
    for item in listed:
        try:
            records.append(json.loads(objects.get(item["Key"])))
        except (NotFoundError, ValueError) as error:  # removed meanwhile, or not a record: leave it out
            get_run_logger().warning("Left %s out of the monitoring plot: %s", objects.uri(item["Key"]), error)
    if not records:
        return None
    objects.put_verified(MONITORING_PLOT_KEY, monitoring_report.monitoring_plot(records), "image/png")
    drawn_at = datetime.now(UTC).isoformat(timespec="seconds")
    return {"uri": uri, "redrawn": True, "drawn_at": drawn_at, "records": len(records)}
