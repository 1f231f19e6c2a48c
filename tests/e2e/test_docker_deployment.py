"""End to end: the project's prefect.yaml deployed to a docker work pool.

Real components only: a Prefect server and a SeaweedFS S3 server started here
on 127.0.0.1, the project image built by `prefect deploy --all` (its build step
and the Dockerfile users run), and a Prefect docker worker that runs the
training and then the inference deployment as containers of that image.

Needs a Docker engine (see .ci/docker.sh) and, where no registry is reachable,
a local base image passed as PYTHON_IMAGE (plus TAXI_PIP_NO_INDEX=1 and a filled
./wheelhouse for an offline build). Skipped when no engine is reachable, but
under CI=true a missing engine is a failure.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import boto3
import pytest

import devstack

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
    run,
    run_deployment,
    start,
    stop,
)

pytestmark = pytest.mark.docker

POOL = "taxi-docker-e2e"
BUCKET = "taxi-e2e"
IMAGE = "taxi-duration-e2e"


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory):
    """Prefect server + SeaweedFS on loopback (the test session's own helpers for both, on
    ports of their own); yields the env for CLI calls."""
    tmp = tmp_path_factory.mktemp("docker-e2e")
    access_key, secret_key = "e2e" + secrets.token_hex(6), secrets.token_hex(20)
    signing_key = secrets.token_urlsafe(32)
    s3_server = devstack.start_s3_server(tmp / "s3", access_key, secret_key)
    try:
        prefect_server = devstack.start_prefect_server(tmp / "prefect-server")
    except BaseException:
        s3_server.stop()
        raise
    api_url = f"{prefect_server.url}/api"
    env = {
        **clean_env(),
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server.url,
        "TAXI_BUCKET": BUCKET,
        "TAXI_WORK_POOL": POOL,
        "TAXI_IMAGE": IMAGE,
        # The deployments name the block; the key itself goes only to the setup.
        "TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key",
        # Flow containers reach both servers on the host's loopback.
        "TAXI_FLOW_NETWORK": "host",
    }
    s3 = boto3.client(
        "s3", endpoint_url=s3_server.url, aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name="us-east-1"
    )
    try:
        yield {"env": env, "tmp": tmp, "api": api_url, "s3": s3, "secrets": [secret_key, signing_key]}
    finally:
        prefect_server.stop()
        s3_server.stop()


def test_training_and_inference_deployments_run_as_containers(stack, docker_client):
    env, api_url, s3, tmp = stack["env"], stack["api"], stack["s3"], stack["tmp"]
    started = time.monotonic()
    timings: dict[str, float] = {}

    # The work pool and its Secret blocks, as the compose one-shot makes them.
    run([str(BIN / "python"), "-m", "deploy.work_pool"], {**env, "TAXI_SIGNING_KEY": stack["secrets"][1]}, 120)
    # Sample data into the bucket, as the compose seed one-shot does.
    run([str(BIN / "python"), "-m", "taxi.seed", "--data-dir", "data"], env, 300)
    assert "data/green/green_tripdata_2021-03.parquet.manifest.json" in keys(s3, BUCKET, "data/")

    # A missing setting stops the deploy before anything is built or registered
    # (unchecked, an unset {{ $VAR }} would be stored as "").
    no_bucket = {k: v for k, v in env.items() if k != "TAXI_BUCKET"}
    failed = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
        env=no_bucket,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0
    assert "set TAXI_BUCKET" in failed.stdout + failed.stderr, failed.stdout[-3000:]
    assert api("POST", f"{api_url}/deployments/filter", json={}) == []

    # The project's own prefect.yaml, build step included.
    t0 = time.monotonic()
    deployed = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, 1200)
    timings["prefect deploy --all (image build)"] = time.monotonic() - t0
    for secret in stack["secrets"]:
        assert secret not in deployed.stdout + deployed.stderr
    training = deployment(api_url, "taxi-training")
    inference = deployment(api_url, "taxi-inference")

    image = training["job_variables"]["image"]
    assert image == inference["job_variables"]["image"]
    name, tag = image.rsplit(":", 1)
    assert name == IMAGE and tag and tag != "latest", image
    docker_client.images.get(image)  # built on this engine

    # The schedules on the server are exactly those prefect.yaml declares.
    training_schedules = [s["schedule"] for s in training["schedules"]]
    inference_schedules = [s["schedule"] for s in inference["schedules"]]
    assert [(s.get("cron"), s.get("timezone")) for s in training_schedules] == [("0 0 * * 0", "UTC")]
    assert [(s.get("interval"), s.get("cron")) for s in inference_schedules] == [(3600.0, None)]

    # No secret in the deployments: flow containers get them from Secret blocks.
    for dep in (training, inference):
        for secret in stack["secrets"]:
            assert secret not in json.dumps(dep)
        assert "AWS_SECRET_ACCESS_KEY" not in dep["job_variables"].get("env", {})

    # `env --default-signal=INT`: a background worker inherits SIGINT as
    # ignored, and the worker stops on SIGTERM by sending itself SIGINT.
    worker = start(
        ["env", "--default-signal=INT", str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "docker"],
        {**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        tmp / "worker.log",
    )
    run_ids: list[str] = []
    try:
        for label, dep in (("training", training), ("inference", inference)):
            t0 = time.monotonic()
            flow_run = run_deployment(api_url, dep["id"])
            timings[f"{label} run, trigger to final state"] = time.monotonic() - t0
            run_ids.append(flow_run["id"])
            containers = flow_containers(docker_client, flow_run["id"])
            assert flow_run["state_type"] == "COMPLETED", (
                f"{label} run ended {flow_run['state_type']}: {flow_run['state']}\n"
                f"--- container logs:\n{container_logs(containers)}\n"
                f"--- worker log:\n{(tmp / 'worker.log').read_text()[-4000:]}"
            )
            # It really was one container of the deployed image, run as the
            # image's unprivileged user.
            assert len(containers) == 1, containers
            assert containers[0].attrs["Config"]["Image"] == image
            assert containers[0].attrs["Config"]["User"] == "app"
    finally:
        stop(worker)
        for run_id in run_ids:
            for container in flow_containers(docker_client, run_id):
                container.remove(force=True)
        # Drop this run's tag but keep its untagged layers as build cache.
        docker_client.images.remove(image, noprune=True)

    # The worker resolved the secrets for the containers without logging them.
    worker_log = (tmp / "worker.log").read_text()
    assert not [secret for secret in stack["secrets"] if secret in worker_log]
    assert_bucket_after_runs(s3, BUCKET)

    timings["total"] = time.monotonic() - started
    print("\n" + "\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
