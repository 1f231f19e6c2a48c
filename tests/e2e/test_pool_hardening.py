"""End to end: what the locked-down work pool gives flow containers, and how long they stay.

Real components only: a Prefect server and a SeaweedFS S3 server on 127.0.0.1, the pool made
by `python -m deploy.work_pool`, the project's deployments registered by `prefect deploy --all`
(image build included), and the worker the compose stack runs (`python -m deploy.worker`),
which starts flow containers on the real Docker engine and sweeps the finished ones.

- A deployment registered while the pool was still permissive (as any pool made before the
  lock-down was), asking for a privileged container, a mount of `/`, an extra capability,
  another network and another pool's label, gets none of them once the pool is locked again:
  checked with `docker inspect` on its container. The same requests are now refused
  (every unsafe variable: tests/integration/test_work_pool.py).
- The worker enforces the policy itself (deploy/container_policy.py): a run asking for
  TAXI_ALLOW_UNSIGNED=1 or a memory limit over TAXI_MEM_LIMIT_MAX, and a run of a pool whose
  template was changed through the API to privileged and a mount of `/`, end Failed naming the
  refused setting, with no container made. The containers it does make are hardened (all
  capabilities dropped, no-new-privileges, pids and log limits, read-only root with tmpfs) and
  hold neither the S3 keys nor the signing key in their environment.
- Retention: the container of a Completed run is removed; that of a Failed run is kept until
  its bound (90 s here, TAXI_KEEP_FAILED_CONTAINERS_HOURS) and removed then.
- Memory: every container has the pool's default limit (4 GiB) and no swap on top; a run
  given a limit it exceeds is killed (OOMKilled), ends Crashed, and its container is kept.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
from prefect_docker.worker import DockerWorker

from deploy.container_policy import PIDS_LIMIT
from deploy.containers import SUCCESS_GRACE, stopped_at
from deploy.work_pool import DEFAULT_MEM_LIMIT, base_job_template

from .dockerutil import (
    BIN,
    FLOW_RUN_TIMEOUT,
    api,
    container_logs,
    deployment,
    flow_containers,
    host_stack,
    run,
    start,
    stop,
)

pytestmark = pytest.mark.docker

POOL = "taxi-pool-hardening-e2e"
BUCKET = "taxi-pool-e2e"
IMAGE = "taxi-duration-pool-e2e"
KEEP_FAILED_SECONDS = 90
SWEEP_SECONDS = 2
TAG = "e2e-" + secrets.token_hex(4)
GIB = 1024**3
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory):
    with host_stack(tmp_path_factory.mktemp("pool-e2e"), POOL, BUCKET, IMAGE) as servers:
        try:
            yield servers
        finally:
            for container in docker_client.containers.list(
                all=True, filters={"label": f"io.prefect.work-pool-name={POOL}"}
            ):
                container.remove(force=True)
            # Drop this run's tag but keep its untagged layers as build cache.
            if docker_client.images.list(name=f"{IMAGE}:{TAG}"):
                docker_client.images.remove(f"{IMAGE}:{TAG}", noprune=True)


def _exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


def _final_containers(
    client: docker.DockerClient, api_url: str, expected: dict[str, str], worker_log: Path
) -> dict[str, dict]:
    """Wait for the final state of each flow run (run id -> expected state type), check it, and
    take its one container's attributes as soon as it is final (the sweeper removes a
    Completed run's container SUCCESS_GRACE later)."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while len(found) < len(expected) and time.monotonic() < deadline:
        for run_id in expected.keys() - found.keys():
            flow_run = api("GET", f"{api_url}/flow_runs/{run_id}")
            if flow_run["state_type"] not in FINAL:
                continue
            containers = flow_containers(client, run_id)
            assert flow_run["state_type"] == expected[run_id], (
                f"{flow_run['name']} run ended {flow_run['state_type']}: {flow_run['state']}\n"
                f"--- container logs:\n{container_logs(containers)}\n--- worker log:\n{worker_log.read_text()[-4000:]}"
            )
            assert len(containers) == 1, containers
            found[run_id] = containers[0].attrs
        time.sleep(0.5)
    assert len(found) == len(expected), (
        f"runs not finished after {FLOW_RUN_TIMEOUT} s: {expected.keys() - found.keys()}"
    )
    return found


def _refused(client: docker.DockerClient, api_url: str, run_id: str, *settings: str) -> None:
    """The run ends Failed, its message naming each of `settings`, and has no container."""
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while (flow_run := api("GET", f"{api_url}/flow_runs/{run_id}"))["state_type"] not in FINAL:
        assert time.monotonic() < deadline, f"run {run_id} not final after {FLOW_RUN_TIMEOUT} s"
        time.sleep(0.5)
    message = flow_run["state"]["message"] or ""
    assert flow_run["state_type"] == "FAILED" and "refused" in message, flow_run["state"]
    for setting in settings:
        assert setting in message, message
    assert flow_containers(client, run_id) == [], "a container was created for a refused run"


def _start_worker(env: dict, log: Path):
    return start(
        [
            "env",
            "--default-signal=INT",
            str(BIN / "python"),
            "-m",
            "deploy.worker",
            "--pool",
            POOL,
            "--type",
            "docker",
        ],
        {
            **env,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "TAXI_KEEP_FAILED_CONTAINERS_HOURS": str(KEEP_FAILED_SECONDS / 3600),
            "TAXI_CONTAINER_SWEEP_SECONDS": str(SWEEP_SECONDS),
        },
        log,
    )


def test_locked_pool_containers_are_unprivileged_limited_and_swept(stack, docker_client):
    env, api_url, tmp = {**stack["env"], "TAXI_IMAGE_TAG": TAG}, stack["api"], stack["tmp"]
    image = f"{IMAGE}:{TAG}"
    run(
        [str(BIN / "python"), "-m", "deploy.work_pool"],
        {**env, "TAXI_SIGNING_KEY": stack["secrets"][1]},
        120,
    )
    stack["s3"].create_bucket(Bucket=BUCKET)
    # The project's own deployments pass the locked pool's checks.
    run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, 1200)
    ingest, inference = deployment(api_url, "taxi-ingest"), deployment(api_url, "taxi-inference")
    assert inference["job_variables"]["image"] == image

    # A deployment registered while the pool was permissive: prefect-docker's own template.
    permissive = {"base_job_template": DockerWorker.get_default_base_job_template()}
    httpx.patch(f"{api_url}/work_pools/{POOL}", json=permissive, timeout=30).raise_for_status()
    unsafe = {
        "name": "taxi-unsafe",
        "flow_id": inference["flow_id"],
        "work_pool_name": POOL,
        "entrypoint": inference["entrypoint"],
        "pull_steps": inference["pull_steps"],
        "parameters": inference["parameters"],
        "job_variables": {
            **inference["job_variables"],
            "privileged": True,
            "volumes": ["/:/host"],
            "container_create_kwargs": {"cap_add": ["SYS_ADMIN"]},
            "network_mode": "bridge",
            "labels": {
                "prefect.io/work-pool-name": "another-pool",
                "prefect.io/work-pool-id": "another-id",
            },
        },
    }
    unsafe_deployment = api("POST", f"{api_url}/deployments/", json=unsafe)
    # Its run, created now, waits for a worker (as scheduled runs do: the scheduler does not
    # check job variables).
    unsafe_run = api(
        "POST", f"{api_url}/deployments/{unsafe_deployment['id']}/create_flow_run", json={}
    )
    # Locked again, as re-running the setup on an existing stack does.
    run(
        [str(BIN / "python"), "-m", "deploy.work_pool"],
        {**env, "TAXI_SIGNING_KEY": stack["secrets"][1]},
        120,
    )
    # Now such a deployment is refused, and so is any new run of it, or a run asking for more.
    attempts = [
        httpx.post(f"{api_url}/deployments/", json={**unsafe, "name": "taxi-unsafe-2"}, timeout=30),
        httpx.post(
            f"{api_url}/deployments/{unsafe_deployment['id']}/create_flow_run", json={}, timeout=30
        ),
        httpx.post(
            f"{api_url}/deployments/{inference['id']}/create_flow_run",
            json={"job_variables": {"privileged": True}},
            timeout=30,
        ),
    ]
    for refused in attempts:
        assert (
            refused.status_code == 422 and "Additional properties are not allowed" in refused.text
        ), refused.text
    for variable in ("privileged", "volumes", "container_create_kwargs", "network_mode", "labels"):
        assert f"'{variable}'" in attempts[0].text, attempts[0].text

    pool = api("GET", f"{api_url}/work_pools/{POOL}")
    worker_log = tmp / "worker.log"
    worker = _start_worker(env, worker_log)
    try:
        body = {"parameters": {"start": "2021-01", "end": "2021-01"}}
        ingest_run = api("POST", f"{api_url}/deployments/{ingest['id']}/create_flow_run", json=body)
        # A run given a memory limit its imports alone exceed.
        small = {"parameters": body["parameters"], "job_variables": {"mem_limit": "64m"}}
        starved_run = api(
            "POST", f"{api_url}/deployments/{ingest['id']}/create_flow_run", json=small
        )
        # Asking for more than the worker's policy allows: refused by the worker itself (the
        # API accepts both: env is open to runs, and the pool's pattern has no ceiling).
        unsigned = {**body, "job_variables": {"env": {"TAXI_ALLOW_UNSIGNED": "1"}}}
        greedy = {**body, "job_variables": {"mem_limit": "9g"}}
        unsigned_run, greedy_run = (
            api("POST", f"{api_url}/deployments/{ingest['id']}/create_flow_run", json=asked)
            for asked in (unsigned, greedy)
        )
        # Before any model is published, the hourly job fails ("no model has been published").
        expected = {
            unsafe_run["id"]: "FAILED",
            ingest_run["id"]: "COMPLETED",
            starved_run["id"]: "CRASHED",
        }
        containers = _final_containers(docker_client, api_url, expected, worker_log)
        failed, succeeded, starved = (containers[run_id] for run_id in expected)
        _refused(docker_client, api_url, unsigned_run["id"], "env TAXI_ALLOW_UNSIGNED")
        _refused(docker_client, api_url, greedy_run["id"], "mem_limit", "8g")
        assert (
            starved["HostConfig"]["Memory"] == 64 * 1024**2
            and starved["State"]["OOMKilled"] is True
        ), starved["State"]

        for attrs in (succeeded, failed):
            host = attrs["HostConfig"]
            assert attrs["Config"]["Image"] == image
            assert host["Privileged"] is False
            assert not host["Binds"] and not attrs["Mounts"], (host["Binds"], attrs["Mounts"])
            assert not host["CapAdd"]
            assert host["NetworkMode"] == "host"  # the pool's network, not the deployment's bridge
            labels = attrs["Config"]["Labels"]
            assert (labels["io.prefect.work-pool-name"], labels["io.prefect.work-pool-id"]) == (
                POOL,
                pool["id"],
            )
            assert (
                DEFAULT_MEM_LIMIT == "4g"
                and host["Memory"] == 4 * GIB
                and host["MemorySwap"] == 4 * GIB
            )
            # Hardened by the worker, whatever the template says.
            assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
            assert PIDS_LIMIT == 512 and host["PidsLimit"] == 512
            assert host["LogConfig"] == {
                "Type": "json-file",
                "Config": {"max-file": "3", "max-size": "10m"},
            }
            assert host["ReadonlyRootfs"] is True
            assert set(host["Tmpfs"]) == {
                "/tmp",
                "/home/app/.prefect",
                "/home/app/.config/matplotlib",
            }
            run_id = labels["io.prefect.flow-run-id"]
            assert attrs["Name"] == f"/taxi-flow-run-{run_id}"
            # The S3 keys and the signing key stay in their blocks; only the names are here.
            flow_env = " ".join(attrs["Config"]["Env"])
            assert not [secret for secret in stack["secrets"] if secret in flow_env]
            assert "AWS_SECRET_ACCESS_KEY=" not in flow_env, flow_env
            assert "TAXI_AWS_SECRET_ACCESS_KEY_BLOCK=taxi-aws-secret-access-key" in flow_env

        # The Completed run's container goes once its grace has passed.
        deadline = time.monotonic() + SUCCESS_GRACE.total_seconds() + 60
        while _exists(docker_client, succeeded["Id"]) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _exists(docker_client, succeeded["Id"]), (
            "the Completed run's container was not removed"
        )

        # The Failed run's container outlives that grace by many sweeps, then goes at its bound.
        container = docker_client.containers.get(failed["Id"])
        finished = stopped_at(container)
        wait = (finished + SUCCESS_GRACE - datetime.now(UTC)).total_seconds() + 5 * SWEEP_SECONDS
        time.sleep(max(wait, 0))
        assert _exists(docker_client, failed["Id"]), (
            "the Failed run's container was removed before its bound"
        )
        assert _exists(docker_client, starved["Id"]), (
            "the Crashed run's container was removed before its bound"
        )
        deadline = time.monotonic() + KEEP_FAILED_SECONDS + 60
        while _exists(docker_client, failed["Id"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        kept = (datetime.now(UTC) - finished).total_seconds()
        assert not _exists(docker_client, failed["Id"]), (
            "the Failed run's container outlived its bound"
        )
        assert KEEP_FAILED_SECONDS - 1 <= kept <= KEEP_FAILED_SECONDS + 10 * SWEEP_SECONDS, kept
    finally:
        stop(worker)

    log = worker_log.read_text()
    assert f"removed finished flow container {failed['Name'].lstrip('/')}" in log, log[-3000:]
    assert (
        api(
            "GET", f"{api_url}/flow_runs/{succeeded['Config']['Labels']['io.prefect.flow-run-id']}"
        )["state_type"]
        == "COMPLETED"
    )
    print(f"\n  failed run's container kept {kept:.1f} s (bound {KEEP_FAILED_SECONDS} s)")

    # Whoever holds the API's credential changes the pool's template back to root on the host,
    # bypassing the API's checks; a fresh worker (reading that template) refuses the run.
    rooted = base_job_template(IMAGE, "host")
    rooted["job_configuration"].update(privileged=True, volumes=["/:/host"])
    httpx.patch(
        f"{api_url}/work_pools/{POOL}", json={"base_job_template": rooted}, timeout=30
    ).raise_for_status()
    rooted_run = api("POST", f"{api_url}/deployments/{ingest['id']}/create_flow_run", json=body)
    worker = _start_worker(env, tmp / "worker-rooted.log")
    try:
        _refused(docker_client, api_url, rooted_run["id"], "privileged", "volumes")
    finally:
        stop(worker)
