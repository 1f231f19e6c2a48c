"""The two entrypoints: training (process, train, evaluate) and inference (process, predict).

They take and return plain Python objects and touch no storage, so they can be called from a
notebook, a test, a benchmark or the Prefect flows' tasks alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from taxi.config import PREDICTION_COLUMN
from taxi.data import PICKUP, ProcessedData, process_inference_data, process_train_data
from taxi.model import evaluate_model, make_vectorizer, predict, train_model


@dataclass
class TrainingResult:
    model: Any
    vectorizer: Any
    train: ProcessedData
    test: ProcessedData
    rmse_train: float
    rmse_test: float

    @property
    def metrics(self) -> dict[str, float]:
        return {"rmse_train": self.rmse_train, "rmse_test": self.rmse_test}


def run_training(
    train_source: str, test_source: str, model_type: str = "linear", use_trip_distance: bool = False
) -> TrainingResult:
    """Process both months, fit on the first, report RMSE on both."""
    train = process_train_data(train_source, make_vectorizer(model_type, use_trip_distance))
    model = train_model(train.X, train.y, model_type)
    test = process_train_data(test_source, train.vectorizer)
    return TrainingResult(
        model=model,
        vectorizer=train.vectorizer,
        train=train,
        test=test,
        rmse_train=evaluate_model(model, train.X, train.y),
        rmse_test=evaluate_model(model, test.X, test.y),
    )


def predictions_frame(processed: ProcessedData, predicted_minutes) -> pd.DataFrame:
    """One row per processed trip, in order: when and where it starts and ends, and the prediction."""
    columns = [PICKUP, "PULocationID", "DOLocationID"]
    frame = processed.trips[columns].reset_index(drop=True)
    return frame.assign(**{PREDICTION_COLUMN: predicted_minutes})


def run_inference(source: str, model: Any, vectorizer: Any) -> pd.DataFrame:
    """Predict the duration of every trip in `source`, in input order."""
    processed = process_inference_data(source, vectorizer)
    return predictions_frame(processed, predict(model, processed.X))


__all__ = ["TrainingResult", "predictions_frame", "run_inference", "run_training"]
