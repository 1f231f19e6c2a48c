"""The processing steps that turn a TLC trip file into model-ready data, and their order.

The order is declared once, here (TRAIN_STEPS, INFERENCE_STEPS), and run by one function,
`process`. `process_train_data` and `process_inference_data` call each step directly;
flows/processing.py hands `process` a runner that calls each step as a Prefect task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from taxi.config import (
    CATEGORICAL_COLUMNS,
    MAX_DURATION_MINUTES,
    MIN_DURATION_MINUTES,
    MISSING_CATEGORY,
    TARGET_COLUMN,
)
from taxi.errors import DataError
from taxi.features import FeatureMatrix, OneHotVectorizer, Vectorizer
from taxi.sources import load_data
from taxi.tlc import DROPOFF, PICKUP

TripStep = Callable[[pd.DataFrame], pd.DataFrame]

P = ParamSpec("P")
R = TypeVar("R")


def compute_target(trips: pd.DataFrame) -> pd.DataFrame:
    """Add the target: trip duration in minutes (dropoff minus pickup)."""
    duration = (trips[DROPOFF] - trips[PICKUP]).dt.total_seconds() / 60
    return trips.assign(**{TARGET_COLUMN: duration.astype(np.float64)})


def filter_outliers(
    trips: pd.DataFrame,
    min_minutes: float = MIN_DURATION_MINUTES,
    max_minutes: float = MAX_DURATION_MINUTES,
) -> pd.DataFrame:
    """Keep trips with min_minutes <= duration <= max_minutes (both inclusive)."""
    duration = trips[TARGET_COLUMN]
    return trips.loc[(duration >= min_minutes) & (duration <= max_minutes)]


def encode_categorical_columns(
    trips: pd.DataFrame, columns: tuple[str, ...] = CATEGORICAL_COLUMNS
) -> pd.DataFrame:
    """Category columns as integers, missing values as -1 (the course's fillna(-1).astype(int))."""
    encoded = {}
    for column in columns:
        values = trips[column]
        if pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
            encoded[column] = values.to_numpy(dtype=np.int64)
            continue
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        # NaN and inf both mean "unknown"; truncating other floats matches astype(int).
        encoded[column] = np.where(np.isfinite(values), values, MISSING_CATEGORY).astype(np.int64)
    return trips.assign(**encoded)


def extract_x_y(
    trips: pd.DataFrame, vectorizer: Vectorizer | None = None
) -> tuple[FeatureMatrix, np.ndarray | None, Vectorizer]:
    """Feature matrix, target (None when the trips have none) and the vectorizer.

    A fitted vectorizer only transforms. An unfitted one (or None, meaning the course's
    one-hot encoding) is fitted on these trips with `fit_transform`, which lets a vectorizer
    whose features depend on the target encode its own training rows out of fold.
    """
    y = trips[TARGET_COLUMN].to_numpy(dtype=np.float64) if TARGET_COLUMN in trips else None
    if vectorizer is None:
        vectorizer = OneHotVectorizer()
    if _is_fitted(vectorizer):
        return vectorizer.transform(trips), y, vectorizer
    if y is None:
        raise ValueError("fitting a vectorizer needs trips with a target: use process_train_data")
    return vectorizer.fit_transform(trips, y), y, vectorizer


def _is_fitted(estimator: Vectorizer) -> bool:
    try:
        check_is_fitted(estimator)
        return True
    except NotFittedError:
        return False


# The steps between loading a file and extracting its features, in order. Trips with a known
# outcome get their target and lose their outliers; trips to predict keep every row.
TRAIN_STEPS: tuple[TripStep, ...] = (compute_target, filter_outliers, encode_categorical_columns)
INFERENCE_STEPS: tuple[TripStep, ...] = (encode_categorical_columns,)


@dataclass
class ProcessedData:
    """Model-ready data and what it took to get it."""

    X: FeatureMatrix
    y: np.ndarray | None
    vectorizer: Vectorizer
    trips: pd.DataFrame  # the rows behind X, with encoded categories
    source: str
    rows_read: int
    sha256: str | None = None  # of the file read (taxi.load_data); None for trips in memory

    @property
    def rows_kept(self) -> int:
        return len(self.trips)

    @property
    def rows_filtered(self) -> int:
        return self.rows_read - self.rows_kept


class StepRunner(Protocol):
    """Calls one step with its arguments: directly, or as a Prefect task in the flows."""

    def __call__(self, step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...


def call_directly(step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    return step(*args, **kwargs)


def ensure_trips_left(kept: pd.DataFrame, rows_read: int, source: str) -> None:
    """Training on nothing is an input problem, not a modelling one: say so by name."""
    if kept.empty:
        raise DataError(
            source,
            f"no trips left after keeping durations of {MIN_DURATION_MINUTES:g}-{MAX_DURATION_MINUTES:g} minutes "
            f"({rows_read} read)",
        )


def apply_steps(
    source: str, steps: tuple[TripStep, ...], run: StepRunner = call_directly
) -> tuple[pd.DataFrame, int, str | None]:
    """Load `source` and apply `steps` in order, each through `run`: the trips, how many were
    read and the sha256 of the bytes they were read from."""
    trips = run(load_data, source)
    rows_read, sha256 = len(trips), trips.attrs.get("sha256")
    # Rebinding one name lets each intermediate frame go as soon as the next exists.
    for step in steps:
        trips = run(step, trips)
    ensure_trips_left(trips, rows_read, source)  # only the outlier filter drops trips
    return trips, rows_read, sha256


def process(
    source: str,
    vectorizer: Vectorizer | None,
    steps: tuple[TripStep, ...],
    run: StepRunner = call_directly,
) -> ProcessedData:
    """Load `source`, apply `steps` in order, and extract features (fitting an unfitted
    vectorizer on these trips): each through `run`."""
    trips, rows_read, sha256 = apply_steps(source, steps, run)
    X, y, vectorizer = run(extract_x_y, trips, vectorizer)
    return ProcessedData(X, y, vectorizer, trips, source, rows_read, sha256)


def process_trips(
    trips: pd.DataFrame,
    source: str,
    vectorizer: Vectorizer | None,
    steps: tuple[TripStep, ...],
    run: StepRunner = call_directly,
) -> ProcessedData:
    """`process` for trips already in memory (`source` names them in errors)."""
    rows_read = len(trips)
    for step in steps:
        trips = run(step, trips)
    ensure_trips_left(trips, rows_read, source)
    X, y, vectorizer = run(extract_x_y, trips, vectorizer)
    return ProcessedData(X, y, vectorizer, trips, source, rows_read)


def process_train_data(source: str, vectorizer: Vectorizer | None = None) -> ProcessedData:
    """Every step for data with a known outcome: load, target, outlier filter, encode, features.

    With no vectorizer or an unfitted one, it is fitted here (see extract_x_y)."""
    return process(source, vectorizer, TRAIN_STEPS)


def process_inference_data(source: str, vectorizer: Vectorizer) -> ProcessedData:
    """Steps for data to predict: load, encode, features. No target and no filter: every
    input trip gets a prediction, in input order."""
    return process(source, vectorizer, INFERENCE_STEPS)
