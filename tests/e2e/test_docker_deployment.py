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
import subprocess
import time

import pytest

from .dockerutil import (
    BIN,
    REPO,
    api,
    assert_bucket_after_runs,
    container_logs,
    deployment,
    flow_containers,
    host_stack,
    image_size_line,
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
    with host_stack(tmp_path_factory.mktemp("docker-e2e"), POOL, BUCKET, IMAGE) as servers:
        yield servers


def test_training_and_inference_deployments_run_as_containers(stack, docker_client):
    env, api_url, s3, tmp = stack["env"], stack["api"], stack["s3"], stack["tmp"]
    started = time.monotonic()
    timings: dict[str, float] = {}

    # The work pool and its Secret blocks, as the compose one-shot makes them.
    run(
        [str(BIN / "python"), "-m", "deploy.work_pool"],
        {**env, "TAXI_SIGNING_KEY": stack["secrets"][1]},
        120,
    )
    # The hourly job's first file; the months themselves come in through the ingest deployment.
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(
        str(REPO / "data" / "green_tripdata_2021-03.parquet"),
        BUCKET,
        "incoming/green_tripdata_2021-03.parquet",
    )

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
    ingest = deployment(api_url, "taxi-ingest")
    training = deployment(api_url, "taxi-training")
    inference = deployment(api_url, "taxi-inference")
    # The training deployment uses the moving window: no fixed files.
    assert "train_path" not in training["parameters"] and training["parameters"]["color"] == "green"

    image = training["job_variables"]["image"]
    assert image == inference["job_variables"]["image"]
    name, tag = image.rsplit(":", 1)
    assert name == IMAGE and tag and tag != "latest", image
    docker_client.images.get(image)  # built on this engine
    size_line = image_size_line(docker_client, image)

    # The schedules on the server are exactly those prefect.yaml declares.
    training_schedules = [s["schedule"] for s in training["schedules"]]
    inference_schedules = [s["schedule"] for s in inference["schedules"]]
    assert [(s.get("cron"), s.get("timezone")) for s in training_schedules] == [
        ("0 0 * * 0", "UTC")
    ]
    assert [(s.get("interval"), s.get("cron")) for s in inference_schedules] == [(3600.0, None)]
    assert [s["schedule"].get("cron") for s in ingest["schedules"]] == ["0 6 * * *"]

    # No secret in the deployments: flow containers get them from Secret blocks.
    for dep in (ingest, training, inference):
        for secret in stack["secrets"]:
            assert secret not in json.dumps(dep)
        assert "AWS_SECRET_ACCESS_KEY" not in dep["job_variables"].get("env", {})

    # `env --default-signal=INT`: a background worker inherits SIGINT as
    # ignored, and the worker stops on SIGTERM by sending itself SIGINT.
    worker = start(
        [
            "env",
            "--default-signal=INT",
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "docker",
        ],
        {**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        tmp / "worker.log",
    )
    run_ids: list[str] = []
    try:
        # Ingest the shipped months (the image's data/ stands in for the TLC site), then train on
        # the window as of the run's date (test on the newest month, train on the one before it).
        runs = (
            ("ingest", ingest, {"start": "2021-01", "end": "2021-03"}),
            ("training", training, None),
            ("inference", inference, None),
        )
        for label, dep, parameters in runs:
            t0 = time.monotonic()
            flow_run = run_deployment(api_url, dep["id"], parameters)
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
    data = keys(s3, BUCKET, "data/green/")
    for month in ("01", "02", "03"):
        assert f"data/green/green_tripdata_2021-{month}.parquet.manifest.json" in data, data
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key="models/latest.json")["Body"].read())
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"models/{latest['version']}/manifest.json")["Body"].read()
    )
    assert (manifest["window"]["train_months"], manifest["window"]["test_month"]) == (
        ["2021-02"],
        "2021-03",
    )

    timings["total"] = time.monotonic() - started
    print("\n" + size_line)
    print("\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
