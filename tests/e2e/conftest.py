import pytest

from .dockerutil import docker_client_or_skip


@pytest.fixture(scope="module")
def docker_client():
    client = docker_client_or_skip()
    yield client
    client.close()
