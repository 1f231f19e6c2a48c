"""Prefect tasks wrapping the `taxi` steps.

I/O tasks (reading data, S3 reads and writes) retry with a growing delay, except when the
failure is the input's own fault: a missing file or a tampered model fails the same way
every time, so retrying it only delays the error.

The model signing key is resolved here, inside the tasks that need it, from a Prefect Secret
block (named by TAXI_SIGNING_KEY_BLOCK) or the TAXI_SIGNING_KEY variable, and handed to the
`taxi` package's ArtifactStore. It is never a task or flow parameter, so it never reaches the
Prefect API, and never logged.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import taxi
import taxi.evaluation
from taxi import incoming
from taxi.config import SIGNING_KEY_ENV, signing_key_from_env
from taxi.data import DataError
from taxi.incoming import Claim, IncomingFile
from taxi.storage import ArtifactStore, IntegrityError, LoadedModel, ModelNotFoundError, StorageError, UnsupportedModelError

VERSION = taxi.__version__
SIGNING_KEY_BLOCK_ENV = "TAXI_SIGNING_KEY_BLOCK"
RETRY_DELAYS_ENV = "TAXI_IO_RETRY_DELAYS"
# Three retries, 2 + 10 + 30 s apart. With botocore's bounds on one S3 call (taxi.storage:
# at most ~18 s against an endpoint that never answers, ~3 s against one that refuses), a
# dead S3 endpoint fails an I/O task in at most 4 x 18 + 42 = 114 s, and in about 55 s
# when connections are refused.
DEFAULT_IO_RETRY_DELAYS = [2, 10, 30]
NOT_RETRYABLE = (DataError, IntegrityError, ModelNotFoundError, UnsupportedModelError, ValueError)


def io_retry_delays() -> list[int]:
    """Seconds between I/O task retries; TAXI_IO_RETRY_DELAYS="1,2,4" shortens them (the tests
    do, so that fault tests finish quickly). Read once, when the tasks are defined."""
    raw = os.environ.get(RETRY_DELAYS_ENV, "").strip()
    if not raw:
        return list(DEFAULT_IO_RETRY_DELAYS)
    try:
        delays = [int(part) for part in raw.split(",")]
    except ValueError as error:
        raise ValueError(f"{RETRY_DELAYS_ENV} must be comma-separated whole seconds, got {raw!r}") from error
    if any(d < 0 for d in delays):
        raise ValueError(f"{RETRY_DELAYS_ENV} must not be negative, got {raw!r}")
    return delays


IO_RETRY_DELAYS = io_retry_delays()
IO_RETRIES = len(IO_RETRY_DELAYS)


def signing_key() -> bytes | None:
    """The model signing key: from the Prefect Secret block named by TAXI_SIGNING_KEY_BLOCK,
    else from TAXI_SIGNING_KEY, else None (models are then neither signed nor checked)."""
    block = os.environ.get(SIGNING_KEY_BLOCK_ENV, "").strip()
    if not block:
        return signing_key_from_env()
    if signing_key_from_env() is not None:
        # Two sources could disagree between training and inference; make the choice explicit.
        raise ValueError(f"set {SIGNING_KEY_BLOCK_ENV} or {SIGNING_KEY_ENV}, not both")
    from prefect.blocks.system import Secret

    value = Secret.load(block).get()
    if not isinstance(value, str) or not value:
        raise ValueError(f"the Secret block {block!r} must hold a non-empty string (the signing key)")
    return value.encode()


def artifact_store() -> ArtifactStore:
    """The bucket from the environment, with the signing key if one is configured."""
    return ArtifactStore(signing_key=signing_key())


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
        # With the signing key: a champion someone swapped in is refused before unpickling here too.
        champion = artifact_store().load_model("latest")
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
    model: Any,
    vectorizer: Any,
    metrics: dict[str, Any],
    details: dict[str, Any],
    promote: bool,
    attachments: dict[str, tuple[bytes, str]],
) -> dict[str, Any]:
    store = artifact_store()
    # A retry after a failure midway starts a new version: the half-written one stays
    # without a manifest (never loadable) until delete_incomplete_versions removes it.
    manifest = store.save_model(model, vectorizer, metrics=metrics, details=details, promote=promote, attachments=attachments)
    logger = get_run_logger()
    for entry in manifest["objects"].values():
        logger.info("Wrote %s (%d bytes, sha256 %s)", store.uri(entry["key"]), entry["bytes"], entry["sha256"][:12])
    signed = "signed" if store.signing_key is not None else "not signed: no signing key configured"
    if promote:
        logger.info("Published model version %s (%s); %s now points at it", manifest["version"], signed, store.uri(store.latest_key))
    else:
        logger.info(
            "Stored model version %s (%s) without promoting it; %s unchanged", manifest["version"], signed, store.uri(store.latest_key)
        )
    try:
        removed = store.delete_incomplete_versions()
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
    store = artifact_store()
    loaded = store.load_model(version)
    checks = "checksums and signature verified" if store.signing_key is not None else "checksums verified; no signing key configured"
    get_run_logger().info(
        "Loaded model version %s from %s (%s)", loaded.version, store.uri(store.model_key(loaded.version, "")), checks
    )
    return loaded


@task(name="write-predictions", tags=["taxi", "io", "s3"], **io_task)
def write_predictions(predictions: pd.DataFrame, source: str, version: str, name: str | None = None) -> str:
    uri = artifact_store().write_predictions(predictions, source, version, name)
    get_run_logger().info("Wrote %d predictions to %s", len(predictions), uri)
    return uri


# --- incoming files (taxi.incoming) ------------------------------------------------------


@task(name="list-incoming", tags=["taxi", "io", "s3"], **io_task)
def list_incoming(prefix: str) -> list[IncomingFile]:
    return incoming.list_incoming(artifact_store(), prefix)


@task(name="list-processed", tags=["taxi", "io", "s3"], **io_task)
def list_processed(prefix: str) -> set[str]:
    return incoming.processed_keys(artifact_store(), prefix)


@task(name="claim-file", tags=["taxi", "io", "s3"], **io_task)
def claim_file(file: IncomingFile, owner: str) -> Claim:
    return incoming.claim(artifact_store(), file, owner)


@task(name="release-claim", tags=["taxi", "io", "s3"], **io_task)
def release_claim(file: IncomingFile) -> None:
    incoming.release(artifact_store(), file)


@task(name="record-done", tags=["taxi", "io", "s3"], **io_task)
def record_done(file: IncomingFile, predictions_uri: str, model_version: str, run: str) -> dict[str, Any]:
    return incoming.record_done(artifact_store(), file, predictions_uri, model_version, run)
