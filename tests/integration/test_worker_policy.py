"""The project's docker worker on a real Prefect server: runs asking for more than its container
policy allows end Failed, naming the refused setting, before any container is made (they never
reach the Docker engine: this test needs none). What the containers it does start get, on a
real engine: tests/e2e/test_pool_hardening.py."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from deploy.docker_worker import TaxiDockerWorker, policy_from_settings
from deploy.work_pool import base_job_template, setup
from taxi.settings import Settings

REPOSITORY = "registry.example.com/team/taxi-duration"
IMAGE = f"{REPOSITORY}:20261204T120000"
NETWORK = "taxi-net"
DEPLOYMENT_ENV = {"TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key", "TAXI_ALLOW_UNSIGNED": ""}


def _call(method: str, url: str, body: dict | None = None) -> httpx.Response:
    """One API call, retried while the server answers 503 (SQLite busy)."""
    for attempt in range(10):
        response = httpx.request(method, url, json=body, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response


@pytest.fixture
def pool(prefect_api) -> tuple[str, str]:
    """A locked pool of its own (deploy.work_pool) with a deployment; (pool name, deployment id)."""
    name = f"taxi-worker-{secrets.token_hex(4)}"
    settings = Settings.from_env().model_copy(update={"image": REPOSITORY, "flow_network": NETWORK})
    asyncio.run(setup(name, settings))
    flow_id = _call("POST", f"{prefect_api}/flows/", {"name": "worker-policy-flow"}).json()["id"]
    deployment = _call(
        "POST",
        f"{prefect_api}/deployments/",
        {
            "name": f"d-{secrets.token_hex(4)}",
            "flow_id": flow_id,
            "work_pool_name": name,
            "entrypoint": "flows/ingest.py:ingest_flow",
            "job_variables": {"image": IMAGE, "env": DEPLOYMENT_ENV},
        },
    ).json()
    return name, deployment["id"]


def _run(prefect_api: str, deployment_id: str, job_variables: dict) -> str:
    url = f"{prefect_api}/deployments/{deployment_id}/create_flow_run"
    return _call("POST", url, {"job_variables": job_variables}).json()["id"]


async def _work_once(pool_name: str) -> None:
    policy = policy_from_settings(
        Settings.from_env({"TAXI_IMAGE": REPOSITORY, "TAXI_FLOW_NETWORK": NETWORK})
    )
    async with TaxiDockerWorker(work_pool_name=pool_name) as worker:
        worker.policy = policy
        await worker.start(run_once=True, with_healthcheck=False)


def _final(prefect_api: str, run_id: str) -> dict:
    return _call("GET", f"{prefect_api}/flow_runs/{run_id}").json()


def test_runs_asking_for_more_than_the_policy_end_failed_naming_the_setting(prefect_api, pool):
    name, deployment_id = pool
    asked = {
        # A run may set env (the API allows it), not change a security setting with it.
        "env TAXI_ALLOW_UNSIGNED, TAXI_SIGNING_KEY_BLOCK": {
            "env": {"TAXI_ALLOW_UNSIGNED": "1", "TAXI_SIGNING_KEY_BLOCK": "another-block"}
        },
        "env AWS_ENDPOINT_URL": {"env": {"AWS_ENDPOINT_URL": "http://169.254.169.254"}},
        # Within the API's pattern, over the worker's ceiling (TAXI_MEM_LIMIT_MAX, 8g).
        "mem_limit": {"mem_limit": "9g"},
    }
    runs = {
        setting: _run(prefect_api, deployment_id, variables) for setting, variables in asked.items()
    }
    asyncio.run(_work_once(name))
    for setting, run_id in runs.items():
        flow_run = _final(prefect_api, run_id)
        message = flow_run["state"]["message"]
        assert flow_run["state_type"] == "FAILED", (setting, flow_run["state"])
        assert message.startswith("the worker refused to create this run's container: ")
        assert setting in message, message
        assert "169.254" not in message  # names the setting, never its value
        assert flow_run["infrastructure_pid"] is None, flow_run


def test_a_template_changed_through_the_api_is_refused_by_the_worker(prefect_api, pool):
    """The API checks job variables against the template, so whoever may PATCH the template
    bypasses it; the worker does not."""
    name, deployment_id = pool
    rooted = base_job_template(REPOSITORY, NETWORK)
    rooted["job_configuration"].update(
        privileged=True,
        volumes=["/:/host"],
        container_create_kwargs={"cap_add": ["SYS_ADMIN"], "devices": ["/dev/sda"]},
        network_mode="host",
        command="sh -c 'id'",
        name="innocent",
    )
    rooted["variables"]["properties"]["mem_limit"]["default"] = "64g"
    _call("PATCH", f"{prefect_api}/work_pools/{name}", {"base_job_template": rooted})
    run_id = _run(prefect_api, deployment_id, {})
    asyncio.run(_work_once(name))
    flow_run = _final(prefect_api, run_id)
    assert flow_run["state_type"] == "FAILED", flow_run["state"]
    for setting in (
        "privileged",
        "volumes",
        "container_create_kwargs (cap_add, devices)",
        "network_mode",
        "mem_limit",
        "command",
        "name",
    ):
        assert setting in flow_run["state"]["message"], (setting, flow_run["state"]["message"])
