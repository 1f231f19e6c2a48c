"""Prefect tasks wrapping the `taxi` steps.

I/O tasks (reading data, S3 reads and writes) retry with a growing delay, except when the
failure is the input's own fault: a missing file or a tampered model fails the same way
every time, so retrying it only delays the error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import taxi
import taxi.evaluation
from taxi.data import DataError
from taxi.storage import ArtifactStore, IntegrityError, LoadedModel, ModelNotFoundError

VERSION = taxi.__version__
IO_RETRIES = 3
IO_RETRY_DELAYS = [2, 10, 30]
NOT_RETRYABLE = (DataError, IntegrityError, ModelNotFoundError, ValueError)


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry transient failures, not bad input."""
    try:
        state.result()
    except NOT_RETRYABLE:
        return False
    except Exception:  # noqa: BLE001 (anything else may be transient)
        return True
    return True


# DataFrames and matrices are passed in memory: hashing them for a cache key is wasted work.
pure_task = dict(cache_policy=NO_CACHE, version=VERSION)
io_task = dict(
    cache_policy=NO_CACHE,
    version=VERSION,
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_unless_bad_input,
)


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
    get_run_logger().info("Kept %d of %d trips; filtered out %d outside 1-60 minutes", len(kept), len(trips), len(trips) - len(kept))
    return kept


@task(name="encode-categorical-columns", tags=["taxi"], **pure_task)
def encode_categorical_columns(trips: pd.DataFrame) -> pd.DataFrame:
    return taxi.encode_categorical_columns(trips)


@task(name="extract-x-y", tags=["taxi"], **pure_task)
def extract_x_y(trips: pd.DataFrame, vectorizer: Any = None) -> tuple[Any, np.ndarray | None, Any]:
    return taxi.extract_x_y(trips, vectorizer)


@task(name="train-model", tags=["taxi", "ml"], **pure_task)
def train_model(X: Any, y: np.ndarray, model_type: str = "linear") -> Any:  # noqa: N803
    model = taxi.train_model(X, y, model_type)
    get_run_logger().info("Trained %s on %d trips x %d features", type(model).__name__, X.shape[0], X.shape[1])
    return model


@task(name="evaluate-model", tags=["taxi", "ml"], **pure_task)
def evaluate_model(model: Any, X: Any, y: np.ndarray, dataset: str) -> float:  # noqa: N803
    rmse = taxi.evaluate_model(model, X, y)
    get_run_logger().info("RMSE on %s: %.4f minutes (%d trips)", dataset, rmse, len(y))
    return rmse


@task(name="predict", tags=["taxi", "ml"], **pure_task)
def predict(model: Any, X: Any) -> np.ndarray:  # noqa: N803
    return taxi.predict(model, X)


@task(name="course-baseline", tags=["taxi", "ml"], **pure_task)
def course_baseline_rmse(train_trips: pd.DataFrame, test_trips: pd.DataFrame) -> float:
    rmse = taxi.evaluation.course_baseline_rmse(train_trips, test_trips)
    get_run_logger().info("Course baseline (one-hot + linear regression) test RMSE: %.4f", rmse)
    return rmse


@task(name="evaluate-champion", tags=["taxi", "ml", "s3"], **io_task)
def evaluate_champion(test_trips: pd.DataFrame, y: np.ndarray) -> tuple[str | None, float | None]:
    """The current `latest` model's version and its RMSE on these trips, or (None, None)."""
    try:
        champion = ArtifactStore().load_model("latest")
    except ModelNotFoundError:
        get_run_logger().info("No published model yet: nothing to compare with")
        return None, None
    rmse = taxi.evaluate_model(champion.model, champion.vectorizer.transform(test_trips), y)
    get_run_logger().info("Champion %s on the same test trips: RMSE %.4f", champion.version, rmse)
    return champion.version, rmse


@task(name="save-model", tags=["taxi", "io", "s3"], **io_task)
def save_model(
    model: Any,
    vectorizer: Any,
    metrics: dict[str, Any],
    details: dict[str, Any],
    promote: bool,
    attachments: dict[str, tuple[bytes, str]],
) -> dict[str, Any]:
    store = ArtifactStore()
    manifest = store.save_model(model, vectorizer, metrics=metrics, details=details, promote=promote, attachments=attachments)
    logger = get_run_logger()
    for entry in manifest["objects"].values():
        logger.info("Wrote %s (%d bytes, sha256 %s)", store.uri(entry["key"]), entry["bytes"], entry["sha256"][:12])
    if promote:
        logger.info("Published model version %s; %s now points at it", manifest["version"], store.uri(store.latest_key))
    else:
        logger.info("Stored model version %s without promoting it; %s unchanged", manifest["version"], store.uri(store.latest_key))
    return manifest


@task(name="load-model", tags=["taxi", "io", "s3"], **io_task)
def load_model(version: str) -> LoadedModel:
    store = ArtifactStore()
    loaded = store.load_model(version)
    get_run_logger().info(
        "Loaded model version %s from %s (checksums verified)", loaded.version, store.uri(store.model_key(loaded.version, ""))
    )
    return loaded


@task(name="write-predictions", tags=["taxi", "io", "s3"], **io_task)
def write_predictions(predictions: pd.DataFrame, source: str, version: str) -> str:
    uri = ArtifactStore().write_predictions(predictions, source, version)
    get_run_logger().info("Wrote %d predictions to %s", len(predictions), uri)
    return uri
