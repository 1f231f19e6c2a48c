"""End to end: the container of an hourly run is killed while it predicts a file; the run and its
subflow runs end Crashed within about two minutes, and the next run predicts the files.

Real components only: a Prefect server and a SeaweedFS S3 server on 127.0.0.1, the pool and the
automations made by `python -m deploy.work_pool` (no webhook: the zombie detection alone), the
project's deployments registered by `prefect deploy --all` (image build included), and the
worker the compose stack runs (`python -m deploy.worker`), which starts the flow containers on
the real Docker engine. The container is stopped with `docker kill` (SIGKILL, as the OOM killer
does), so nothing in it reports how the run ended.
"""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest

from taxi import run_training
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelRegistry
from tests.paths import YELLOW_FEB, YELLOW_JAN

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

POOL = "taxi-crash-e2e"
BUCKET = "taxi-crash-e2e"
IMAGE = "taxi-duration-crash-e2e"
TAG = "e2e-" + secrets.token_hex(4)
FILES = [f"incoming/{name}.csv" for name in "abcdef"]
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory):
    with host_stack(tmp_path_factory.mktemp("crash-e2e"), POOL, BUCKET, IMAGE) as servers:
        try:
            yield servers
        finally:
            for container in docker_client.containers.list(
                all=True, filters={"label": f"io.prefect.work-pool-name={POOL}"}
            ):
                container.remove(force=True)
            if docker_client.images.list(name=f"{IMAGE}:{TAG}"):
                docker_client.images.remove(f"{IMAGE}:{TAG}", noprune=True)


def _family(api_url: str, run_id: str) -> dict[str, dict]:
    """The flow run and its subflow runs at any depth, by id."""
    family, frontier = {run_id: api("GET", f"{api_url}/flow_runs/{run_id}")}, [run_id]
    while frontier:
        children = api(
            "POST",
            f"{api_url}/flow_runs/filter",
            json={"flow_runs": {"parent_flow_run_id": {"any_": frontier}}},
        )
        family.update({child["id"]: child for child in children})
        frontier = [child["id"] for child in children]
    return family


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {timeout} s")


def test_a_killed_hourly_run_ends_crashed_with_its_subflows_and_the_next_run_predicts(
    stack, docker_client
):
    env, api_url, tmp = {**stack["env"], "TAXI_IMAGE_TAG": TAG}, stack["api"], stack["tmp"]
    signing_key = stack["secrets"][1]
    setup = run(
        [str(BIN / "python"), "-m", "deploy.work_pool"],
        {**env, "TAXI_SIGNING_KEY": signing_key},
        120,
    )
    assert "taxi-zombie-flow-runs" in setup.stdout, setup.stdout
    s3 = stack["s3"]
    s3.create_bucket(Bucket=BUCKET)
    store = ObjectStore(bucket=BUCKET, client=s3)
    model = run_training(str(YELLOW_JAN), str(YELLOW_FEB))
    ModelRegistry(store, signing_key=signing_key.encode()).save_model(
        model.model, model.vectorizer, metrics=model.metrics, details={}
    )
    for key in FILES:
        store.put(key, YELLOW_FEB.read_bytes())
    run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, 1200)
    hourly = deployment(api_url, "taxi-inference")
    assert hourly["job_variables"]["image"] == f"{IMAGE}:{TAG}"
    _unscheduled(api_url)

    worker_log = tmp / "worker.log"
    worker = start(
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
        {**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        worker_log,
    )
    try:
        first = api("POST", f"{api_url}/deployments/{hourly['id']}/create_flow_run", json={})["id"]

        def predicting() -> dict | None:
            running = [
                r
                for r in _family(api_url, first).values()
                if r["id"] != first and r["state_type"] == "RUNNING"
            ]
            return running[0] if running and _keys(s3, "claims/") else None

        _wait(predicting, FLOW_RUN_TIMEOUT, "a subflow run of the hourly run")
        [container] = flow_containers(docker_client, first)
        container.kill()
        killed = time.monotonic()
        # The container's process would have seen its flow's env: the pool's heartbeat setting.
        container.reload()
        assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30" in container.attrs["Config"]["Env"]

        def all_ended() -> dict | None:
            family = _family(api_url, first)
            return family if all(r["state_type"] in FINAL for r in family.values()) else None

        family = _wait(all_ended, 240, "the end of the killed run and its subflow runs")
        took = time.monotonic() - killed
        logs = f"--- container:\n{container_logs([container])}\n--- worker:\n{worker_log.read_text()[-3000:]}"
        assert family[first]["state_type"] == "CRASHED", (family[first]["state"], logs)
        # The subflow run seen running (unless it ended just before the kill) and any under it.
        running_at_kill = [r for r in family.values() if r["state_type"] == "CRASHED"]
        assert len(running_at_kill) >= 2, [r["state"] for r in family.values()]
        assert all(r["state_type"] in ("COMPLETED", "CRASHED") for r in family.values())
        assert took < 150, (took, [r["state"] for r in family.values()])
        # The file it was predicting has its attempt counted, and its claim is the dead run's.
        failures = [k for k in _keys(s3, "failures/")]
        assert len(failures) == 1, failures
        record = json.loads(store.get(failures[0]))
        assert record["failures"] == 1 and record["attempt_run"] == first, record
        assert _keys(s3, "claims/") == [failures[0].replace("failures/", "claims/", 1)]

        started = time.monotonic()
        second = api("POST", f"{api_url}/deployments/{hourly['id']}/create_flow_run", json={})["id"]
        ended = _wait(
            lambda: (r := api("GET", f"{api_url}/flow_runs/{second}"))["state_type"] in FINAL and r,
            FLOW_RUN_TIMEOUT,
            "the end of the next hourly run",
        )
        assert ended["state_type"] == "COMPLETED", (ended["state"], logs)
        waited = time.monotonic() - started
    finally:
        stop(worker)

    done = sorted(
        k.removeprefix("processed/").removesuffix(".json") for k in _keys(s3, "processed/")
    )
    assert done == FILES
    assert _keys(s3, "claims/") == [] and _keys(s3, "failures/") == []
    print(
        f"\n  killed run and {len(running_at_kill) - 1} subflow run(s) Crashed {took:.0f} s after "
        f"the kill; the next run predicted the rest in {waited:.0f} s"
    )


def _unscheduled(api_url: str) -> None:
    """No scheduled run of the deployments starts during the test: their schedules off, the runs
    the scheduler made already deleted."""
    for item in api("POST", f"{api_url}/deployments/filter", json={}):
        for schedule in item["schedules"]:
            url = f"{api_url}/deployments/{item['id']}/schedules/{schedule['id']}"
            httpx.patch(url, json={"active": False}, timeout=30).raise_for_status()
    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    for flow_run in api("POST", f"{api_url}/flow_runs/filter", json=body):
        httpx.delete(f"{api_url}/flow_runs/{flow_run['id']}", timeout=30).raise_for_status()


def _keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
