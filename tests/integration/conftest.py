"""Fixtures for the flow tests: a bucket with a published model."""

from __future__ import annotations

import pytest

from taxi import TrainingResult, run_training
from tests.paths import YELLOW_FEB, YELLOW_JAN


@pytest.fixture(scope="session")
def small_model() -> TrainingResult:
    """A model trained in about a second on the yellow CSV samples."""
    return run_training(str(YELLOW_JAN), str(YELLOW_FEB))


@pytest.fixture
def published(prefect_api, bucket_env, small_model):
    """The test's bucket (also TAXI_BUCKET) with `small_model` published as latest, unsigned;
    yields (store, version)."""
    manifest = bucket_env.save_model(small_model.model, small_model.vectorizer, metrics=small_model.metrics, details={})
    return bucket_env, manifest["version"]
