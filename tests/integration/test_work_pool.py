"""The work pool's job template on a real Prefect server: what deployments and flow runs may
ask of their containers. (What the containers then get, on a real Docker engine:
tests/e2e/test_pool_hardening.py.)"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from deploy.work_pool import setup
from taxi.settings import Settings
from tests.paths import ROOT

REPOSITORY = "registry.example.com:5000/team/taxi-duration"
IMAGE = f"{REPOSITORY}:20261128T120000"
LINKS = "http://localhost:9001/api/files/download?path=/buckets/{bucket}/{key}"
STACK = "taxi-pool-test-stack"

# Job variables a deployment might use to get root on the Docker host, or out of the pool's
# network, its image or its memory limit; each one is refused.
REFUSED = [
    ({"privileged": True}, "'privileged' was unexpected"),
    ({"volumes": ["/:/host"]}, "'volumes' was unexpected"),
    (
        {"container_create_kwargs": {"cap_add": ["SYS_ADMIN"]}},
        "'container_create_kwargs' was unexpected",
    ),
    ({"cap_add": ["SYS_ADMIN"]}, "'cap_add' was unexpected"),
    ({"network_mode": "bridge"}, "'network_mode' was unexpected"),
    ({"networks": ["another-net"]}, "'networks' was unexpected"),
    ({"labels": {"prefect.io/work-pool-name": "another-pool"}}, "'labels' was unexpected"),
    ({"auto_remove": True}, "'auto_remove' was unexpected"),
    ({"memswap_limit": "-1"}, "'memswap_limit' was unexpected"),
    ({"command": "sh -c id"}, "'command' was unexpected"),
    ({"name": "taxi-duration-worker-1"}, "'name' was unexpected"),
    ({"mem_limit": "0"}, "Validation failed for field 'mem_limit'"),
    ({"image": "docker.io/library/alpine:3.20"}, "Validation failed for field 'image'"),
    ({"image": f"{REPOSITORY}-evil:1"}, "Validation failed for field 'image'"),
    ({"image": f"evil.example.com/{REPOSITORY}:1"}, "Validation failed for field 'image'"),
    (
        {"image": REPOSITORY},
        "Validation failed for field 'image'",
    ),  # no tag: `latest`, pulled every run
]


@pytest.fixture(scope="module")
def pool(prefect_api) -> tuple[str, str]:
    """A pool made by deploy.work_pool for REPOSITORY on the network taxi-net, with the link
    template LINKS, and a flow; yields (pool name, flow id)."""
    name = f"taxi-pool-{secrets.token_hex(4)}"
    asyncio.run(
        setup(
            name,
            Settings.from_env().model_copy(
                update={
                    "image": REPOSITORY,
                    "flow_network": "taxi-net",
                    "object_url_template": LINKS,
                    "stack": STACK,
                }
            ),
        )
    )
    flow_id = (
        _post(f"{prefect_api}/flows/", {"name": "pool-test-flow"}).raise_for_status().json()["id"]
    )
    return name, flow_id


def _post(url: str, body: dict) -> httpx.Response:
    """POST, retried while the server answers 503 (SQLite busy), as Prefect's client does."""
    for attempt in range(10):
        response = httpx.post(url, json=body, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    return response


def _create_deployment(api: str, pool: tuple[str, str], job_variables: dict) -> httpx.Response:
    return _post(
        f"{api}/deployments/",
        {
            "name": f"d-{secrets.token_hex(4)}",
            "flow_id": pool[1],
            "work_pool_name": pool[0],
            "entrypoint": "flows/ingest.py:ingest_flow",
            "job_variables": job_variables,
        },
    )


@pytest.mark.parametrize(
    ("job_variables", "message"),
    REFUSED,
    ids=[next(iter(v)) + "-" + str(i) for i, (v, _) in enumerate(REFUSED)],
)
def test_unsafe_job_variables_are_refused_for_deployments_and_flow_runs(
    prefect_api, pool, job_variables, message
):
    refused = _create_deployment(prefect_api, pool, {"image": IMAGE, **job_variables})
    assert refused.status_code == 422, refused.text
    assert "Error creating deployment" in refused.text and message in refused.text, refused.text

    # Nor can a run of an accepted deployment ask for it.
    deployment = _create_deployment(prefect_api, pool, {"image": IMAGE}).raise_for_status().json()
    run = _post(
        f"{prefect_api}/deployments/{deployment['id']}/create_flow_run",
        {"job_variables": job_variables},
    )
    assert run.status_code == 422, run.text
    assert "Error creating flow run" in run.text and message in run.text, run.text


def test_the_project_deployments_job_variables_are_accepted(prefect_api, pool):
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        variables = yaml.safe_load((ROOT / name).read_text())["definitions"]["work_pool"][
            "job_variables"
        ]
        variables = {**variables, "image": IMAGE, "env": {key: "value" for key in variables["env"]}}
        deployment = _create_deployment(prefect_api, pool, variables)
        assert deployment.status_code == 201, (name, deployment.text)
        # With a digest, and with another memory limit, too.
        with_digest = {**variables, "image": f"{IMAGE}@sha256:{'0' * 64}", "mem_limit": "8g"}
        assert _create_deployment(prefect_api, pool, with_digest).status_code == 201


def test_flow_containers_get_the_pools_link_template_since_deployments_set_none(prefect_api, pool):
    """The worker's own merge (the job configuration it starts a container from): the pool's
    env defaults, with the project deployments' env on top, keep the pool's link template and
    the S3 keys from their blocks. A deployment that set the variable, even to "", would
    replace it: why prefect.yaml does not."""
    from prefect_docker.worker import DockerWorkerJobConfiguration

    template = httpx.get(f"{prefect_api}/work_pools/{pool[0]}", timeout=30).json()
    template = template["base_job_template"]

    def container_env(job_variables: dict) -> dict:
        config = asyncio.run(
            DockerWorkerJobConfiguration.from_template_and_values(template, job_variables)
        )
        return config.env

    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        variables = yaml.safe_load((ROOT / name).read_text())["definitions"]["work_pool"][
            "job_variables"
        ]
        env = container_env(
            {**variables, "image": IMAGE, "env": {key: "value" for key in variables["env"]}}
        )
        assert env["TAXI_OBJECT_URL_TEMPLATE"] == LINKS, name
        assert env["PREFECT_HOME"] == "value"
        # The S3 keys' blocks by name only: nothing for the worker to resolve into the container.
        assert env["TAXI_AWS_SECRET_ACCESS_KEY_BLOCK"] == "taxi-aws-secret-access-key"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & env.keys(), name
    overridden = container_env({"image": IMAGE, "env": {"TAXI_OBJECT_URL_TEMPLATE": ""}})
    assert overridden["TAXI_OBJECT_URL_TEMPLATE"] == ""


def test_every_container_gets_the_stack_label_and_no_other(prefect_api, pool):
    # The worker adds its io.prefect.* labels to these (checked on a real engine:
    # tests/e2e/test_compose_stack.py); deployments and runs cannot set any (REFUSED).
    template = httpx.get(f"{prefect_api}/work_pools/{pool[0]}", timeout=30).json()
    assert template["base_job_template"]["job_configuration"]["labels"] == {"taxi.stack": STACK}
    assert "labels" not in template["base_job_template"]["variables"]["properties"]


def test_a_run_without_an_image_is_refused(prefect_api, pool):
    # Otherwise the worker would run Prefect's own image from Docker Hub.
    deployment = (
        _create_deployment(prefect_api, pool, {"env": {"A": "b"}}).raise_for_status().json()
    )
    run = _post(f"{prefect_api}/deployments/{deployment['id']}/create_flow_run", {})
    assert run.status_code == 422 and "'image' is a required property" in run.text, run.text


def test_the_pool_setup_requires_the_image_and_the_network(prefect_api, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_API_URL": prefect_api,
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }
    cases = [
        ({}, "set TAXI_IMAGE"),
        (
            {"TAXI_IMAGE": "taxi-duration:1.0", "TAXI_FLOW_NETWORK": "taxi-net"},
            "TAXI_IMAGE must be an image name without tag",
        ),
        (
            {"TAXI_IMAGE": "taxi-duration", "TAXI_FLOW_NETWORK": "container:abc"},
            "TAXI_FLOW_NETWORK must be the name of a Docker network",
        ),
        (
            {
                "TAXI_IMAGE": "taxi-duration",
                "TAXI_FLOW_NETWORK": "taxi-net",
                "TAXI_OBJECT_URL_TEMPLATE": "http://localhost:9001/files?path={folder}",
            },
            "TAXI_OBJECT_URL_TEMPLATE must be an http(s) URL with placeholders {key}",
        ),
        (
            {"TAXI_IMAGE": "taxi-duration", "TAXI_FLOW_NETWORK": "taxi-net", "TAXI_STACK": "A b"},
            "TAXI_STACK must be a compose project name",
        ),
    ]
    for extra, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "deploy.work_pool", "--pool", "never-made"],
            env={**env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and message in result.stderr, (extra, result.stderr[-2000:])
    assert httpx.get(f"{prefect_api}/work_pools/never-made").status_code == 404
