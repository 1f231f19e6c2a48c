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
def published(prefect_api, bucket_env, registry, small_model):
    """The test's bucket (also TAXI_BUCKET) with `small_model` published as latest, unsigned
    (by `registry`); yields (store, version)."""
    model = small_model
    manifest = registry.save_model(model.model, model.vectorizer, metrics=model.metrics, details={})
    return bucket_env, manifest["version"]
