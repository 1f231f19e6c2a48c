"""Data processing flows: the same steps as `taxi.process_train_data` and
`taxi.process_inference_data`, one task each so every step shows in the Prefect UI."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks
from taxi.data import ProcessedData, ensure_trips_left


@flow(name="process-train-data", version=tasks.VERSION, validate_parameters=False)
def process_train_data_flow(source: str, vectorizer: Any = None) -> ProcessedData:
    """Load, compute the target, drop outliers, encode, and build features (fitting the
    vectorizer when none is given)."""
    trips = tasks.load_data(source)
    kept = tasks.filter_outliers(tasks.compute_target(trips))
    ensure_trips_left(kept, len(trips), source)
    encoded = tasks.encode_categorical_columns(kept)
    X, y, vectorizer = tasks.extract_x_y(encoded, vectorizer)
    return ProcessedData(X, y, vectorizer, encoded, source, len(trips))


@flow(name="process-inference-data", version=tasks.VERSION, validate_parameters=False)
def process_inference_data_flow(source: str, vectorizer: Any) -> ProcessedData:
    """Load, encode and build features with a fitted vectorizer; no target, no filtering."""
    trips = tasks.encode_categorical_columns(tasks.load_data(source))
    X, _, vectorizer = tasks.extract_x_y(trips, vectorizer)
    return ProcessedData(X, None, vectorizer, trips, source, len(trips))
