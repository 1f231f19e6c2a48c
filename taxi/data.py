"""Where taxi 0.1 kept file reading and the processing steps. Kept so that imports written
against it keep working: reading TLC files is taxi/tlc.py, the steps are taxi/steps.py."""

from taxi.errors import DataError
from taxi.sources import load_data
from taxi.steps import (
    ProcessedData,
    compute_target,
    encode_categorical_columns,
    ensure_trips_left,
    extract_x_y,
    filter_outliers,
    process_inference_data,
    process_train_data,
)
from taxi.tlc import DROPOFF, PICKUP

__all__ = [
    "DROPOFF",
    "PICKUP",
    "DataError",
    "ProcessedData",
    "compute_target",
    "encode_categorical_columns",
    "ensure_trips_left",
    "extract_x_y",
    "filter_outliers",
    "load_data",
    "process_inference_data",
    "process_train_data",
]
