"""End to end: `docker compose up` of the user's docker-compose.yml, then the
walk-through of the README's "Running in containers" section against it.

The stack's seed one-shot must have uploaded the sample data and its setup
one-shot created the work pool; `prefect deploy --all` from the host then
deploys to it, and the stack's own worker runs a training and an inference
flow run as containers on the compose network.

Where MinIO's image cannot be pulled (CI), set TAXI_COMPOSE_OVERRIDE to
.ci/compose.override.yml: it swaps only that image for SeaweedFS. Uses the
fixed ports of the compose file (4200, 9000, 9001) and the committed
.env.example, with a fresh random secret key.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import boto3
import httpx
import pytest

from .dockerutil import (
    BIN,
    REPO,
    api,
    assert_bucket_after_runs,
    clean_env,
    container_logs,
    deployment,
    flow_containers,
    keys,
    port_free,
    run,
    run_deployment,
    wait_for,
)

pytestmark = pytest.mark.docker

PROJECT = "taxi-e2e-compose"


def _env_file(path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose_stack(docker_client, tmp_path_factory):
    busy = [port for port in (4200, 9000, 9001) if not port_free(port)]
    assert not busy, f"ports {busy} are taken: the compose stack publishes them"
    tmp = tmp_path_factory.mktemp("compose-e2e")
    env = {
        **clean_env(),
        **_env_file(REPO / ".env.example"),
        # The shell's values win over the env file's in compose.
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "TAXI_SIGNING_KEY": secrets.token_urlsafe(32),
        "TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "PREFECT_HOME": str(tmp / "prefect-home"),
    }
    files = ["-f", "docker-compose.yml"]
    if os.environ.get("TAXI_COMPOSE_OVERRIDE"):
        files += ["-f", os.environ["TAXI_COMPOSE_OVERRIDE"]]
    compose = ["docker", "compose", "-p", PROJECT, "--env-file", ".env.example", *files]
    try:
        t0 = time.monotonic()
        result = subprocess.run(
            [*compose, "up", "-d", "--build", "--pull", "never", "--wait", "--wait-timeout", "600"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        up_seconds = time.monotonic() - t0
        if result.returncode != 0:
            logs = subprocess.run([*compose, "logs", "--tail", "50"], env=env, cwd=REPO, capture_output=True, text=True).stdout
            pytest.fail(f"compose up failed:\n{result.stderr[-4000:]}\n--- logs:\n{logs[-6000:]}")
        yield {"env": env, "compose": compose, "up_seconds": up_seconds}
    finally:
        subprocess.run(
            [*compose, "down", "--volumes", "--remove-orphans", "--timeout", "20"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=300,
        )


def test_compose_stack_seeds_data_and_runs_deployments(compose_stack, docker_client):
    env, compose = compose_stack["env"], compose_stack["compose"]
    api_url = env["PREFECT_API_URL"]
    bucket = env["TAXI_BUCKET"]
    timings = {"docker compose up --wait": compose_stack["up_seconds"]}

    # The one-shots finished successfully.
    for service in ("seed", "prefect-setup"):
        ps = run([*compose, "ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}", service], env, 60)
        assert ps.stdout.split() == [service, "exited", "0"], ps.stdout
    # The seed uploaded the sample data (read through the published S3 port).
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    data = keys(s3, bucket, "data/")
    for month in ("01", "02", "03"):
        assert f"data/green/green_tripdata_2021-{month}.parquet" in data, data
        assert f"data/green/green_tripdata_2021-{month}.parquet.manifest.json" in data, data
    # The UI and API are served on :4200; the pool exists with a worker polling it.
    assert httpx.get("http://127.0.0.1:4200/", timeout=10).status_code == 200
    pool = env["TAXI_WORK_POOL"]
    wait_for(
        lambda: any(w["status"] == "ONLINE" for w in api("POST", f"{api_url}/work_pools/{pool}/workers/filter", json={})),
        60,
        "an online worker in the pool",
    )

    # The documented deploy, from the host, with the values of .env.
    t0 = time.monotonic()
    run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, 1200)
    timings["prefect deploy --all"] = time.monotonic() - t0
    run_ids = []
    try:
        for name in ("taxi-training", "taxi-inference"):
            dep = deployment(api_url, name)
            t0 = time.monotonic()
            flow_run = run_deployment(api_url, dep["id"])
            timings[f"{name} run, trigger to final state"] = time.monotonic() - t0
            run_ids.append(flow_run["id"])
            assert flow_run["state_type"] == "COMPLETED", (
                f"{name} ended {flow_run['state_type']}: {flow_run['state']}\n"
                f"--- container logs:\n{container_logs(flow_containers(docker_client, flow_run['id']))}\n"
                f"--- worker logs:\n{run([*compose, 'logs', '--tail', '60', 'worker'], env, 60).stdout}"
            )
    finally:
        for run_id in run_ids:
            for container in flow_containers(docker_client, run_id):
                container.remove(force=True)
        image = deployment(api_url, "taxi-training")["job_variables"]["image"]
        docker_client.images.remove(image, noprune=True)

    assert_bucket_after_runs(s3, bucket)
    print("\n" + "\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
