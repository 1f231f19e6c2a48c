"""Shared fixtures: real sample data, and real servers started once per test session.

The S3 server (SeaweedFS) and the Prefect server run on free loopback ports in a temporary
directory, so the tests never touch a user's own servers, buckets or ~/.prefect. Their
addresses go into the environment before any test imports Prefect or boto3.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
sys.path.insert(0, str(ROOT / "scripts"))

import devstack  # noqa: E402

# One OpenMP thread for the boosting model: the test session's own servers share the two
# cores, and oversubscribed OpenMP threads slow tree fitting down several times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")

GREEN_JAN = DATA / "green_tripdata_2021-01.parquet"
GREEN_FEB = DATA / "green_tripdata_2021-02.parquet"
GREEN_MAR = DATA / "green_tripdata_2021-03.parquet"
YELLOW_JAN = DATA / "yellow_tripdata_2021-01.head28401.csv"
YELLOW_FEB = DATA / "yellow_tripdata_2021-02.head999.csv"

_WORK = Path(tempfile.mkdtemp(prefix="taxi-tests-"))
_S3_PORT = devstack.free_port()
_PREFECT_PORT = devstack.free_port()
_CREDENTIALS = ("test-" + secrets.token_hex(4), secrets.token_urlsafe(24))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_S3_PORT}",
            "AWS_ACCESS_KEY_ID": _CREDENTIALS[0],
            "AWS_SECRET_ACCESS_KEY": _CREDENTIALS[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            "TAXI_BUCKET": "taxi-test",
            "PREFECT_API_URL": f"http://127.0.0.1:{_PREFECT_PORT}/api",
            "PREFECT_HOME": str(_WORK / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    # Short task retry delays (production: 2, 10, 30 s) keep the fault tests quick; set
    # TAXI_IO_RETRY_DELAYS=2,10,30 to measure with production delays.
    os.environ.setdefault("TAXI_IO_RETRY_DELAYS", "1,2,4")
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TAXI_SIGNING_KEY", "TAXI_SIGNING_KEY_BLOCK"):
        os.environ.pop(variable, None)
    # The flow tests publish and load models without a key, through the documented opt-out;
    # the tests of signing set a key (or a Secret block), those of the refusal unset this.
    os.environ["TAXI_ALLOW_UNSIGNED"] = "1"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server over HTTP with credentials enforced; yields its endpoint URL."""
    server = devstack.start_s3_server(_WORK / "s3", *_CREDENTIALS, s3_port=_S3_PORT)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect server (SQLite); yields its API URL."""
    server = devstack.start_prefect_server(_WORK / "prefect-server", port=_PREFECT_PORT)
    yield f"{server.url}/api"
    server.stop()


@pytest.fixture
def store(s3_server):
    """An ObjectStore on a bucket of its own, so tests do not see each other's objects."""
    from taxi.storage.objects import ObjectStore

    store = ObjectStore(bucket=f"test-{secrets.token_hex(4)}")
    store.ensure_bucket()
    return store


@pytest.fixture
def registry(store):
    """The model registry of the test's bucket, unsigned."""
    from taxi.storage.registry import ModelRegistry

    return ModelRegistry(store)


@pytest.fixture
def bucket_env(store, monkeypatch):
    """Point TAXI_BUCKET at the test's own bucket for code that reads the environment."""
    monkeypatch.setenv("TAXI_BUCKET", store.bucket)
    return store
