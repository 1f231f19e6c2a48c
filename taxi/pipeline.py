"""The two entrypoints: training (process, train, evaluate) and inference (process, predict).

This is the one place in `taxi/` that strings the steps together. The entrypoints take and
return plain Python objects and touch no storage, so they can be called from a notebook, a
test, a benchmark or the Prefect flows alike. Each starts by tuning the memory allocator for
trip months (taxi.memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from taxi.config import PREDICTION_COLUMN
from taxi.features import Vectorizer
from taxi.memory import return_freed_memory_to_the_os
from taxi.model import Model, evaluate_model, make_vectorizer, predict, train_model
from taxi.steps import ProcessedData, process_inference_data, process_train_data
from taxi.tlc import PICKUP


@dataclass
class TrainingResult:
    model: Model
    vectorizer: Vectorizer
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
    return_freed_memory_to_the_os()
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


def predictions_frame(processed: ProcessedData, predicted_minutes: np.ndarray) -> pd.DataFrame:
    """One row per processed trip, in order: when and where it starts and ends, and the prediction."""
    columns = [PICKUP, "PULocationID", "DOLocationID"]
    frame = processed.trips[columns].reset_index(drop=True)
    return frame.assign(**{PREDICTION_COLUMN: predicted_minutes})


def run_inference(source: str, model: Model, vectorizer: Vectorizer) -> pd.DataFrame:
    """Predict the duration of every trip in `source`, in input order."""
    return_freed_memory_to_the_os()
    processed = process_inference_data(source, vectorizer)
    return predictions_frame(processed, predict(model, processed.X))


__all__ = ["TrainingResult", "predictions_frame", "run_inference", "run_training"]
