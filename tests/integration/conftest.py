"""Fixtures for the flow tests: a bucket with a published model, a CA for local HTTPS servers."""

from __future__ import annotations

import pytest

from taxi import TrainingResult, run_training
from tests.paths import YELLOW_FEB, YELLOW_JAN
from tests.tls import LocalCA, make_local_ca


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


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory) -> LocalCA:
    return make_local_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted_ca(local_ca, monkeypatch) -> LocalCA:
    """`local_ca`, trusted for this test by this process and its subprocesses as any CA bundle
    is: through OpenSSL's SSL_CERT_FILE (instead of the system's certificates)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(local_ca.ca_file))
    return local_ca
