"""End to end: the project's prefect.yaml deployed to a docker work pool.

Real components only: a Prefect server and a SeaweedFS S3 server started here
on 127.0.0.1, the project image built by `prefect deploy --all` (its build step
and the Dockerfile users run), and a Prefect docker worker that runs the
training and then the inference deployment as containers of that image.

Needs a Docker engine (see .ci/docker.sh) and, where no registry is reachable,
a local base image passed as PYTHON_IMAGE (plus PIP_NO_INDEX=1 and a filled
./wheelhouse for an offline build). Skipped when no engine is reachable, but
under CI=true a missing engine is a failure.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import docker
import httpx
import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "taxi-docker-e2e"
BUCKET = "taxi-e2e"
IMAGE = "taxi-duration-e2e"
FLOW_RUN_TIMEOUT = 600  # s, per flow run; the image is local, runs take ~30 s


def _docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception as exc:  # any failure means: no usable engine
        reason = f"no Docker engine reachable ({exc.__class__.__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide one (.ci/docker.sh up)")
        pytest.skip(reason)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A free loopback port p whose p+10000 is free too: SeaweedFS puts each
    service's gRPC port there, so p must also stay below 55536."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


def _wait_for(check, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    # New session: a Ctrl-C in the terminal running pytest does not hit it twice.
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def docker_client():
    client = _docker_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory):
    """Prefect server + SeaweedFS on loopback; yields the env for CLI calls."""
    tmp = tmp_path_factory.mktemp("docker-e2e")
    s3_port, api_port = _free_port(), _free_port()
    access_key, secret_key = "e2e" + secrets.token_hex(6), secrets.token_hex(20)
    api_url = f"http://127.0.0.1:{api_port}/api"

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "TAXI_"))}
    env = {
        **base_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "TAXI_BUCKET": BUCKET,
        "TAXI_WORK_POOL": POOL,
        "TAXI_IMAGE": IMAGE,
        # Flow containers reach both servers on the host's loopback.
        "TAXI_FLOW_NETWORK": "host",
    }
    procs: list[subprocess.Popen] = []
    try:
        # Only the S3 port matters; the other weed ports are moved off their
        # defaults so a developer's own SeaweedFS does not clash.
        weed_ports = {name: _free_port() for name in ("master", "volume", "filer", "admin")}
        (tmp / "s3").mkdir()
        weed = _start(
            [str(BIN / "weed"), "mini", f"-dir={tmp / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", f"-s3.port={s3_port}", "-webdav=false",
             "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-master.port={weed_ports['master']}", f"-volume.port={weed_ports['volume']}",
             f"-filer.port={weed_ports['filer']}", f"-admin.port={weed_ports['admin']}"],
            env, tmp / "weed.log",
        )
        procs.append(weed)
        server = _start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                         "--port", str(api_port)], env, tmp / "server.log")
        procs.append(server)
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key, region_name="us-east-1")
        _wait_for(lambda: s3.list_buckets() is not None, 60, "SeaweedFS", weed, tmp / "weed.log")
        _wait_for(lambda: httpx.get(f"{api_url}/health", timeout=5).status_code == 200,
                  120, "Prefect server", server, tmp / "server.log")
        yield {"env": env, "tmp": tmp, "api": api_url, "s3": s3, "secret_key": secret_key}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def _api(method: str, url: str, **kwargs) -> dict | list:
    """One Prefect REST call. The server answers 503 for errors it declares
    retryable (e.g. SQLite busy while the worker writes); retry those, as
    Prefect's own client does."""
    for attempt in range(10):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response.json()


def _deployment(api: str, name: str) -> dict:
    found = _api("POST", f"{api}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}})
    assert len(found) == 1, f"expected one deployment {name!r}, got {found}"
    return found[0]


def _run_deployment(api: str, deployment_id: str) -> dict:
    run_id = _api("POST", f"{api}/deployments/{deployment_id}/create_flow_run", json={})["id"]
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = _api("GET", f"{api}/flow_runs/{run_id}")
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} not finished after {FLOW_RUN_TIMEOUT} s: {run['state_type']}")


def _flow_containers(client: docker.DockerClient, run_id: str) -> list:
    # prefect-docker labels each flow-run container with its run id.
    return client.containers.list(all=True, filters={"label": f"io.prefect.flow-run-id={run_id}"})


def _keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_training_and_inference_deployments_run_as_containers(stack, docker_client):
    env, api, s3, tmp = stack["env"], stack["api"], stack["s3"], stack["tmp"]
    started = time.monotonic()
    timings: dict[str, float] = {}

    # The work pool (and its Secret blocks) as docker compose's one-shot makes them.
    _run([str(BIN / "python"), "-m", "deploy.work_pool"], env, 120)
    # Sample data into the bucket, as the compose seed one-shot does.
    _run([str(BIN / "python"), "-m", "taxi.seed", "--data-dir", "data"], env, 300)
    assert "data/green_tripdata_2021-03.parquet" in _keys(s3, "data/")

    # The project's own prefect.yaml, build step included.
    t0 = time.monotonic()
    deploy = _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, 1200)
    timings["deploy (image build)"] = time.monotonic() - t0
    training = _deployment(api, "taxi-training")
    inference = _deployment(api, "taxi-inference")

    image = training["job_variables"]["image"]
    assert image == inference["job_variables"]["image"]
    name, tag = image.rsplit(":", 1)
    assert name == IMAGE and tag and tag != "latest", image
    docker_client.images.get(image)  # built on this engine, not pulled

    # The schedules registered on the server are exactly the ones prefect.yaml declares.
    def schedules(deployment):
        return [s["schedule"] for s in deployment["schedules"]]
    assert [(s["cron"], s["timezone"]) for s in schedules(training)] == [("0 0 * * 0", "UTC")]
    assert [s.get("interval") for s in schedules(inference)] == [3600.0]
    assert all("cron" not in s for s in schedules(inference))

    # No S3 secret stored in the deployments: it comes from Secret blocks.
    for deployment in (training, inference):
        dumped = json.dumps(deployment)
        assert stack["secret_key"] not in dumped
        assert "AWS_SECRET_ACCESS_KEY" not in deployment["job_variables"].get("env", {})

    worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    # `env --default-signal=INT`: a background worker inherits SIGINT as
    # ignored, and the worker stops on SIGTERM by sending itself SIGINT.
    worker = _start(["env", "--default-signal=INT", str(BIN / "prefect"), "worker", "start",
                     "--pool", POOL, "--type", "docker"], worker_env, tmp / "worker.log")
    run_ids: list[str] = []
    try:
        for label, deployment in (("training", training), ("inference", inference)):
            t0 = time.monotonic()
            run = _run_deployment(api, deployment["id"])
            timings[f"{label} run (trigger to final state)"] = time.monotonic() - t0
            run_ids.append(run["id"])
            containers = _flow_containers(docker_client, run["id"])
            logs = "\n".join(c.logs(tail=100).decode(errors="replace") for c in containers)
            assert run["state_type"] == "COMPLETED", (
                f"{label} run ended {run['state_type']}: {run['state']}\n--- container logs:\n{logs}"
                f"\n--- worker log:\n{(tmp / 'worker.log').read_text()[-4000:]}"
            )
            # The run really was one container of the deployed image, running
            # as the image's unprivileged user.
            assert len(containers) == 1, containers
            assert containers[0].attrs["Config"]["Image"] == image
            assert containers[0].attrs["Config"]["User"] == "app"
    finally:
        _stop(worker, timeout=30)
        for run_id in run_ids:
            for container in _flow_containers(docker_client, run_id):
                container.remove(force=True)
        # Drop this run's tag but keep its untagged layers as build cache.
        docker_client.images.remove(image, noprune=True)
    assert worker.returncode is not None

    model_keys = _keys(s3, "models/")
    versions = {key.split("/")[1] for key in model_keys if key.count("/") >= 2}
    complete = [v for v in versions
                if {f"models/{v}/{f}" for f in ("model.pkl", "vectorizer.pkl", "manifest.json")} <= set(model_keys)]
    assert complete, f"no model version with model, vectorizer and manifest: {model_keys}"
    predictions = [k for k in _keys(s3, "predictions/") if k.endswith(".parquet")]
    assert predictions, "no predictions parquet in the bucket"

    timings["total"] = time.monotonic() - started
    print("\n" + "\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
