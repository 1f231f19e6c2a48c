"""Settings shared by the pipeline: feature definitions and where artifacts live.

Everything that varies between machines comes from the environment, read once by
`StoreConfig.from_env()`; everything else is a constant here so there is one place to look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The TLC publishes one parquet file per colour and month here.
TLC_MONTH_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data/{color}_tripdata_{year:04d}-{month:02d}.parquet"

# Course notebook features: the three columns are categories, missing values become -1.
CATEGORICAL_COLUMNS: tuple[str, ...] = ("PULocationID", "DOLocationID", "passenger_count")
MISSING_CATEGORY = -1

# Trips shorter than a minute or longer than an hour are outliers (both bounds inclusive).
MIN_DURATION_MINUTES = 1.0
MAX_DURATION_MINUTES = 60.0

TARGET_COLUMN = "duration"
PREDICTION_COLUMN = "predicted_duration"

DEFAULT_BUCKET = "taxi"

# The key that signs model manifests (HMAC-SHA256); see the README's "Reliability and security".
SIGNING_KEY_ENV = "TAXI_SIGNING_KEY"


def tlc_month_url(color: str, year: int, month: int) -> str:
    """URL of one TLC monthly trip file, e.g. tlc_month_url("yellow", 2021, 1)."""
    if color not in ("yellow", "green"):
        raise ValueError(f"TLC colour must be 'yellow' or 'green', got {color!r}")
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    return TLC_MONTH_URL.format(color=color, year=year, month=month)


@dataclass(frozen=True)
class StoreConfig:
    """Where artifacts go. The endpoint and credentials themselves are boto3's business:
    it reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION."""

    bucket: str = DEFAULT_BUCKET
    models_prefix: str = "models"
    predictions_prefix: str = "predictions"
    data_prefix: str = "data"

    @classmethod
    def from_env(cls) -> "StoreConfig":
        return cls(bucket=os.environ.get("TAXI_BUCKET") or DEFAULT_BUCKET)


def signing_key_from_env() -> bytes | None:
    """TAXI_SIGNING_KEY as bytes, or None when unset or empty (no signing)."""
    value = os.environ.get(SIGNING_KEY_ENV, "")
    return value.encode() if value else None
