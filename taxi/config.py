"""Constants of the pipeline: feature columns, duration bounds, the TLC's file URLs.

What varies between machines comes from the environment: see taxi/settings.py. Where things
live in the bucket: taxi/layout.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from taxi.layout import TLC_FILE_NAME
from taxi.settings import (
    DEFAULT_BUCKET,
    DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    DEFAULT_DOWNLOAD_MAX_BYTES,
    DEFAULT_TLC_BASE_URL,
    SIGNING_KEY_ENV,
    Settings,
    secret_value,
)

# The TLC publishes one parquet file per colour and month here.
TLC_MONTH_URL = f"{DEFAULT_TLC_BASE_URL}/{TLC_FILE_NAME}"

# Bounds on one remote input (taxi.download), unless TAXI_DOWNLOAD_MAX_BYTES or
# TAXI_DOWNLOAD_DEADLINE_SECONDS say otherwise (taxi/settings.py has the reasons).
DOWNLOAD_MAX_BYTES = DEFAULT_DOWNLOAD_MAX_BYTES
DOWNLOAD_DEADLINE_SECONDS = DEFAULT_DOWNLOAD_DEADLINE_SECONDS

# Course notebook features: the three columns are categories, missing values become -1.
CATEGORICAL_COLUMNS: tuple[str, ...] = ("PULocationID", "DOLocationID", "passenger_count")
MISSING_CATEGORY = -1

# Trips shorter than a minute or longer than an hour are outliers (both bounds inclusive).
MIN_DURATION_MINUTES = 1.0
MAX_DURATION_MINUTES = 60.0

TARGET_COLUMN = "duration"
PREDICTION_COLUMN = "predicted_duration"

# The format of each model type's saved model, recorded in every new version's manifest
# ("model_format"), and the formats this code loads (None: a version saved before the tag
# existed). The registry checks the tag before unpickling anything: a gbm version saved
# before XGBoost (a pickled HistGradientBoostingRegressor, no tag) fails with a message
# that says to retrain it; untagged linear versions load as before.
MODEL_FORMATS: dict[str, str] = {"linear": "linear-1", "gbm": "xgboost-ubj-1"}
LOADABLE_MODEL_FORMATS: dict[str, tuple[str | None, ...]] = {"linear": ("linear-1", None), "gbm": ("xgboost-ubj-1",)}

__all__ = [
    "CATEGORICAL_COLUMNS",
    "DEFAULT_BUCKET",
    "DOWNLOAD_DEADLINE_SECONDS",
    "DOWNLOAD_MAX_BYTES",
    "LOADABLE_MODEL_FORMATS",
    "MAX_DURATION_MINUTES",
    "MIN_DURATION_MINUTES",
    "MODEL_FORMATS",
    "MISSING_CATEGORY",
    "PREDICTION_COLUMN",
    "SIGNING_KEY_ENV",
    "TARGET_COLUMN",
    "TLC_MONTH_URL",
    "StoreConfig",
    "signing_key_from_env",
    "tlc_month_url",
]


def tlc_month_url(color: str, year: int, month: int) -> str:
    """URL of one TLC monthly trip file, e.g. tlc_month_url("yellow", 2021, 1)."""
    if color not in ("yellow", "green"):
        raise ValueError(f"TLC colour must be 'yellow' or 'green', got {color!r}")
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    return TLC_MONTH_URL.format(color=color, year=year, month=month)


# --- taxi 0.1's names, kept so that code written against them keeps working ---------------


@dataclass(frozen=True)
class StoreConfig:
    """Which bucket a taxi.storage.ArtifactStore uses (the bucket layout is taxi.layout's)."""

    bucket: str = DEFAULT_BUCKET

    @classmethod
    def from_env(cls) -> StoreConfig:
        return cls(bucket=Settings.from_env().bucket)


def signing_key_from_env() -> bytes | None:
    """TAXI_SIGNING_KEY as bytes, or None when unset or empty: Settings.from_env().signing_key."""
    key = secret_value(Settings.from_env().signing_key)
    return None if key is None else key.encode()


# The gradient-boosting model trains on at most this many trips of its window, sampled
# uniformly across the months with a fixed seed (taxi.sampling): a year of yellow trips
# (~16M) would need several GB to train on whole.
DEFAULT_MAX_TRAIN_ROWS = 2_000_000
SAMPLE_SEED = 0
# Trips behind a model version's monitoring reference (histograms; taxi.monitoring): a uniform
# sample of the training window, whole for windows smaller than this.
REFERENCE_ROWS = 500_000
