"""Constants of the pipeline: feature columns, duration bounds, model formats, sample sizes.

What varies between machines comes from the environment: see taxi/settings.py. Where things
live in the bucket: taxi/layout.py.
"""

from __future__ import annotations

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
LOADABLE_MODEL_FORMATS: dict[str, tuple[str | None, ...]] = {
    "linear": ("linear-1", None),
    "gbm": ("xgboost-ubj-1",),
}

# The gradient-boosting model trains on at most this many trips of its window, sampled
# uniformly across the months with a fixed seed (taxi.sampling): a year of yellow trips
# would need several GB to train on whole.
DEFAULT_MAX_TRAIN_ROWS = 2_000_000
SAMPLE_SEED = 0
# Trips behind a model version's monitoring reference (histograms; taxi.monitoring): a uniform
# sample of the training window, whole for windows smaller than this.
REFERENCE_ROWS = 500_000
