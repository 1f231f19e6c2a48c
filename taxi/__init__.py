"""NYC taxi trip duration: the ML steps as plain functions (no orchestration here)."""

__version__ = "0.2.0"

from taxi.errors import DataError
from taxi.model import evaluate_model, predict, train_model
from taxi.pipeline import TrainingResult, predict_trips, run_inference, run_training
from taxi.sources import load_data
from taxi.steps import (
    ProcessedData,
    compute_target,
    encode_categorical_columns,
    extract_x_y,
    filter_outliers,
    process_inference_data,
    process_train_data,
)

__all__ = [
    "DataError",
    "ProcessedData",
    "TrainingResult",
    "compute_target",
    "encode_categorical_columns",
    "evaluate_model",
    "extract_x_y",
    "filter_outliers",
    "load_data",
    "predict",
    "predict_trips",
    "process_inference_data",
    "process_train_data",
    "run_inference",
    "run_training",
    "train_model",
]
