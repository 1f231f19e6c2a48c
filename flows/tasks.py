"""Prefect tasks wrapping the `taxi` steps, models and predictions: each is named, tagged and
logs what it did. The hourly job's bookkeeping tasks: flows/incoming_tasks.py. How they retry, which key signs the models and which registry they use: flows/policy.py.
The settings (taxi.settings) are read inside each task that needs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
from prefect import Task, get_run_logger, task

import taxi
import taxi.storage.predictions
from flows.ingest import months_in_bucket
from flows.policy import io_retries, io_task, model_registry, pure_task, signing_key
from taxi import monitoring
from taxi.data_manifests import load_data_manifest
from taxi.features import FeatureMatrix, Vectorizer
from taxi.layout import (
    LATEST_KEY,
    data_key,
    model_prefix,
    monitoring_record_key,
    parse_s3_uri,
)
from taxi.model import Model
from taxi.months import Month, month_name
from taxi.records import (
    Manifest,
    ManifestDetails,
    MonitoringRecord,
    ReferenceStatistics,
)
from taxi.settings import Settings
from taxi.steps import StepRunner
from taxi.storage.errors import IntegrityError, StorageError
from taxi.storage.manifests import UnsupportedModelError
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ANY_CHAMPION, LoadedModel, ModelNotFoundError
from taxi.window import WindowPlan, plan_window

P = ParamSpec("P")
R = TypeVar("R")

# --- the processing steps (taxi.steps) and models ---------------------------------------------


@task(name="load-data", tags=["taxi", "io"], **io_task)
def load_data(source: str) -> pd.DataFrame:
    trips = taxi.load_data(source)
    schema = trips.attrs["schema"]
    get_run_logger().info("Read %d trips (%s schema) from %s", len(trips), schema, source)
    return trips


@task(name="compute-target", tags=["taxi"], **pure_task)
def compute_target(trips: pd.DataFrame) -> pd.DataFrame:
    return taxi.compute_target(trips)


@task(name="filter-outliers", tags=["taxi"], **pure_task)
def filter_outliers(trips: pd.DataFrame) -> pd.DataFrame:
    kept = taxi.filter_outliers(trips)
    get_run_logger().info(
        "Kept %d of %d trips; filtered out %d outside 1-60 minutes",
        len(kept),
        len(trips),
        len(trips) - len(kept),
    )
    return kept


@task(name="encode-categorical-columns", tags=["taxi"], **pure_task)
def encode_categorical_columns(trips: pd.DataFrame) -> pd.DataFrame:
    return taxi.encode_categorical_columns(trips)


@task(name="extract-x-y", tags=["taxi"], **pure_task)
def extract_x_y(
    trips: pd.DataFrame, vectorizer: Vectorizer | None = None
) -> tuple[FeatureMatrix, np.ndarray | None, Vectorizer]:
    return taxi.extract_x_y(trips, vectorizer)


@task(name="train-model", tags=["taxi", "ml"], **pure_task)
def train_model(
    X: FeatureMatrix,
    y: np.ndarray,
    model_type: str = "linear",
    vectorizer: Vectorizer | None = None,
) -> Model:
    model = taxi.train_model(X, y, model_type, vectorizer)
    get_run_logger().info(
        "Trained %s on %d trips x %d features", type(model).__name__, X.shape[0], X.shape[1]
    )
    return model


@task(name="predict", tags=["taxi", "ml"], **pure_task)
def predict(model: Model, X: FeatureMatrix) -> np.ndarray:
    return taxi.predict(model, X)


@task(name="reference-statistics", tags=["taxi", "ml"], **pure_task)
def reference_statistics(
    trips: pd.DataFrame, predictions: np.ndarray, include_trip_distance: bool = False
) -> ReferenceStatistics:
    return monitoring.reference_statistics(trips, predictions, include_trip_distance)


# The task of each step the pipeline (taxi.pipeline, taxi.steps) strings.
STEP_TASKS: dict[Callable[..., Any], Task[..., Any]] = {
    taxi.load_data: load_data,
    taxi.compute_target: compute_target,
    taxi.filter_outliers: filter_outliers,
    taxi.encode_categorical_columns: encode_categorical_columns,
    taxi.extract_x_y: extract_x_y,
    taxi.train_model: train_model,
    taxi.predict: predict,
    monitoring.reference_statistics: reference_statistics,
}


def step_runner(settings: Settings) -> StepRunner:
    """Runs each step of the pipeline as its task, loading (the I/O step) with the run's
    retries."""
    tasks_by_step = {**STEP_TASKS, taxi.load_data: io_retries(settings)(load_data)}

    def run_as_task(step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return tasks_by_step[step](*args, **kwargs)

    return run_as_task


# --- training (taxi.window, taxi.storage.registry) --------------------------------------------


@task(name="plan-training-window", tags=["taxi", "io", "s3"], **io_task)
def plan_training_window(color: str, as_of: date, train_months: int) -> WindowPlan:
    """The months a window run as of `as_of` trains and tests on, from the months in the bucket,
    each with the sha256 its verified data manifest records. A month whose file is there
    without its manifest counts, so that a window reaching it fails naming it."""
    settings = Settings.from_env()
    objects = ObjectStore(settings.bucket)
    present = months_in_bucket(objects, color).with_files
    listed = ", ".join(month_name(m) for m in sorted(present)) or "none"
    get_run_logger().info("%s months in the bucket: %s", color, listed)
    today = datetime.now(UTC).date()
    key = signing_key(settings)

    def manifest_sha256(month: Month) -> str:
        return load_data_manifest(objects, color, month, key)["sha256"]

    def source(month: Month) -> str:
        return objects.uri(data_key(color, month))

    return plan_window(as_of, today, color, present, train_months, source, manifest_sha256)


@task(name="evaluate-champion", tags=["taxi", "ml", "s3"], **io_task)
def evaluate_champion(test_trips: pd.DataFrame, y: np.ndarray) -> tuple[str | None, float | None]:
    """The current `latest` model's version and its RMSE on these trips, or (None, None)."""
    logger = get_run_logger()
    try:
        # With the signing key: a champion someone swapped in is refused before unpickling here too.
        champion = model_registry().load_model("latest")
    except ModelNotFoundError:
        logger.info("No published model yet: nothing to compare with")
        return None, None
    except IntegrityError as error:
        # An altered or unsigned champion (e.g. published before signing was turned on) is
        # not a model to keep: compare with nothing, so this signed model can replace it.
        logger.warning(
            "The current latest model cannot be trusted, not comparing with it: %s", error
        )
        return None, None
    except UnsupportedModelError as error:
        # A champion in a retired format (e.g. a gbm saved before XGBoost) cannot be scored:
        # compare with nothing, so this run's model can replace it.
        logger.warning(
            "The current latest model cannot be loaded, not comparing with it: %s", error
        )
        return None, None
    rmse = taxi.evaluate_model(champion.model, champion.vectorizer.transform(test_trips), y)
    logger.info("Champion %s on the same test trips: RMSE %.4f", champion.version, rmse)
    return champion.version, rmse


@task(name="save-model", tags=["taxi", "io", "s3"], **io_task)
def save_model(
    model: Model,
    vectorizer: Vectorizer,
    metrics: dict[str, float],
    details: ManifestDetails,
    promote: bool,
    attachments: dict[str, tuple[bytes, str]],
    champion: str | None = None,
) -> Manifest:
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
    manifest: Manifest = registry.save_model(
        model,
        vectorizer,
        metrics=metrics,
        details=details,
        promote=promote,
        attachments=attachments,
        champion=ANY_CHAMPION if champion is None else champion,
    )
    logger = get_run_logger()
    for entry in manifest["objects"].values():
        where, sha = objects.uri(entry["key"]), entry["sha256"][:12]
        logger.info("Wrote %s (%d bytes, sha256 %s)", where, entry["bytes"], sha)
    version = manifest["version"]
    signed = (
        "signed" if registry.signing_key is not None else "not signed: no signing key configured"
    )
    latest = objects.uri(LATEST_KEY)
    if manifest["promoted"]:
        logger.info("Published model version %s (%s); %s now points at it", version, signed, latest)
    elif promote:
        logger.warning(
            "Stored model version %s (%s) without promoting it: another training moved %s away "
            "from %s, the version this one was compared with, meanwhile",
            version,
            signed,
            latest,
            champion,
        )
    else:
        logger.info(
            "Stored model version %s (%s) without promoting it; %s unchanged",
            version,
            signed,
            latest,
        )
    try:
        removed = registry.delete_incomplete_versions()
    except StorageError as error:
        # Housekeeping only: failing here must not fail (and so retry, and so republish) a
        # version that is already stored. The next training run tries again.
        logger.warning("Could not remove incomplete model versions: %s", error)
    else:
        if removed:
            logger.info(
                "Removed incomplete model versions left by failed training runs: %s", removed
            )
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
def write_predictions(
    predictions: pd.DataFrame, source: str, version: str, name: str | None = None
) -> str:
    uri = taxi.storage.predictions.write_predictions(
        ObjectStore(), predictions, source, version, name
    )
    get_run_logger().info("Wrote %d predictions to %s", len(predictions), uri)
    return uri


# --- monitoring (taxi.monitoring) -------------------------------------------------------------


@task(name="monitor-batch", tags=["taxi", "ml"], **pure_task)
def monitor_batch(
    reference: ReferenceStatistics | None,
    trips: pd.DataFrame,
    predictions: np.ndarray,
    source: str,
    version: str,
    thresholds: dict[str, float],
) -> MonitoringRecord:
    return monitoring.batch_record(reference, trips, predictions, source, version, thresholds)


@task(name="write-monitoring-record", tags=["taxi", "io", "s3"], **io_task)
def write_monitoring_record(record: MonitoringRecord, predictions_uri: str) -> str:
    objects = ObjectStore()
    key = monitoring_record_key(parse_s3_uri(predictions_uri)[1])
    objects.put_verified(key, json.dumps(record, indent=2).encode(), "application/json")
    return objects.uri(key)
