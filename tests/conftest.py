"""Shared fixtures: real servers, one of each per test session (tests/servers.py).

The S3 server (SeaweedFS) and the Prefect server run on free loopback ports in a temporary
directory, so the tests never touch a user's own servers, buckets or ~/.prefect. Their
addresses go into the environment before any test imports Prefect or boto3.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

import pytest

from tests.servers import SessionServers, process_name

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

SERVERS = pytest.StashKey[SessionServers]()
# A user's settings that would point the tests elsewhere, or sign their models.
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TAXI_SIGNING_KEY", "TAXI_SIGNING_KEY_BLOCK")
# (test id, what it printed) of the Docker end-to-end tests, for the end of the run.
_DOCKER_TEST_OUTPUT: list[tuple[str, str]] = []

# One OpenMP thread for the boosting model: the test session's own servers and parallel
# workers share the two cores, and oversubscribed OpenMP threads slow tree fitting down
# several times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    worker_input = getattr(config, "workerinput", None)
    if worker_input:
        servers = SessionServers(**worker_input["taxi_servers"])
    else:
        servers = SessionServers.new()
    config.stash[SERVERS] = servers
    os.environ.update(
        {
            **servers.environment(process_name()),
            "TAXI_BUCKET": "taxi-test",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    # Short task retry delays (production: 2, 10, 30 s) keep the fault tests quick; set
    # TAXI_IO_RETRY_DELAYS=2,10,30 to measure with production delays.
    os.environ.setdefault("TAXI_IO_RETRY_DELAYS", "1,2,4")
    for variable in UNSET:
        os.environ.pop(variable, None)
    # The flow tests publish and load models without a key, through the documented opt-out;
    # the tests of signing set a key (or a Secret block), those of the refusal unset this.
    os.environ["TAXI_ALLOW_UNSIGNED"] = "1"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    """In xdist's controller: each worker uses the controller's servers."""
    node.workerinput["taxi_servers"] = node.config.stash[SERVERS].as_dict()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and SERVERS in config.stash:
        config.stash[SERVERS].stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a parallel run the Docker end-to-end tests are handed out first: they take longest,
    mostly waiting for image builds and containers, while the other workers run the rest."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("docker") is None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "docker" in report.keywords and report.capstdout:
        _DOCKER_TEST_OUTPUT.append((report.nodeid, report.capstdout))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the Docker end-to-end tests printed (image sizes, where a run's time went), also
    from parallel workers, whose output `-s` cannot show."""
    for nodeid, output in _DOCKER_TEST_OUTPUT:
        terminalreporter.write_sep("-", f"printed by {nodeid}")
        terminalreporter.write(output)


@pytest.fixture(scope="session")
def s3_server(pytestconfig: pytest.Config) -> str:
    """A real S3 server over HTTP with credentials enforced; its endpoint URL."""
    return pytestconfig.stash[SERVERS].s3()


@pytest.fixture(scope="session")
def prefect_api(pytestconfig: pytest.Config) -> str:
    """A real Prefect server (SQLite); its API URL."""
    return pytestconfig.stash[SERVERS].prefect()


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
