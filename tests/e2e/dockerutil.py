"""Helpers shared by the Docker end-to-end tests (real engine, real servers)."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import boto3
import docker
import httpx
import pandas as pd
import pytest

import devstack

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FLOW_RUN_TIMEOUT = 600  # s per flow run; with a local image a run takes 20-60 s


def docker_client_or_skip() -> docker.DockerClient:
    """A client of a reachable engine; skip without one, except under CI=true."""
    try:
        client = docker.from_env(timeout=60)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 (any failure means: no usable engine)
        reason = f"no Docker engine reachable ({exc.__class__.__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide one (.ci/docker.sh up)")
        pytest.skip(reason)


# Build settings that pass from the caller (e.g. CI) to the image build.
PASS_THROUGH = ("TAXI_PIP_NO_INDEX",)


def clean_env() -> dict[str, str]:
    """This process's environment without Prefect, S3 or project settings (the
    test session's own servers are configured there), and with the venv's
    executables first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in PASS_THROUGH or not k.startswith(("PREFECT_", "AWS_", "TAXI_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


@contextmanager
def host_stack(tmp: Path, pool: str, bucket: str, image: str) -> Iterator[dict]:
    """A Prefect server and a SeaweedFS S3 server on loopback (the test session's own helpers
    for both, on ports of their own) for deployments of `image` on `pool`, whose flow
    containers use the host's network; yields the env for CLI calls ("env"), the API URL
    ("api"), an S3 client ("s3") and the secrets that must not leak ("secrets": the S3
    secret key and the signing key, given to deploy.work_pool as TAXI_SIGNING_KEY)."""
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
        # Flow containers on the host network reach it at the same address.
        "TAXI_FLOW_S3_ENDPOINT": s3_server.url,
        "TAXI_BUCKET": bucket,
        "TAXI_WORK_POOL": pool,
        "TAXI_IMAGE": image,
        # The deployments name the block; the key itself goes only to the setup.
        "TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key",
        # Flow containers reach both servers on the host's loopback.
        "TAXI_FLOW_NETWORK": "host",
        # The ingest deployment copies the months shipped in the image, not the TLC's site.
        "TAXI_TLC_BASE_URL": "/opt/taxi/data",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
    try:
        yield {
            "env": env,
            "tmp": tmp,
            "api": api_url,
            "s3": s3,
            "secrets": [secret_key, signing_key],
        }
    finally:
        prefect_server.stop()
        s3_server.stop()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    # Own session: a Ctrl-C in pytest's terminal does not reach it directly.
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(
    check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    tail = lambda: log.read_text()[-3000:] if log else ""  # noqa: E731
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 (not ready yet, whatever the reason)
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n{tail()}")


# Basic auth of a Prefect server that requires it (the compose stack's): (user, password).
Auth = tuple[str, str] | None


def stack_auth(env: dict[str, str]) -> tuple[str, str]:
    """The (user, password) of the stack's API from its env file's PREFECT_API_AUTH_STRING."""
    user, _, password = env["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


def api(method: str, url: str, **kwargs) -> dict | list:
    """One Prefect REST call (`auth=(user, password)` for a server with basic auth). The
    server answers 503 for errors it declares retryable (e.g. SQLite busy while a worker
    writes): retry those, as Prefect's own client does."""
    for attempt in range(10):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response.json()


def deployment(api_url: str, name: str, auth: Auth = None) -> dict:
    found = api(
        "POST",
        f"{api_url}/deployments/filter",
        json={"deployments": {"name": {"any_": [name]}}},
        auth=auth,
    )
    assert len(found) == 1, f"expected one deployment {name!r}, got {found}"
    return found[0]


def run_deployment(
    api_url: str, deployment_id: str, parameters: dict | None = None, auth: Auth = None
) -> dict:
    """Create a flow run of the deployment and wait for its final state."""
    body = {"parameters": parameters} if parameters else {}
    run_id = api(
        "POST", f"{api_url}/deployments/{deployment_id}/create_flow_run", json=body, auth=auth
    )["id"]
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while time.monotonic() < deadline:
        flow_run = api("GET", f"{api_url}/flow_runs/{run_id}", auth=auth)
        if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        time.sleep(0.5)
    pytest.fail(
        f"flow run {run_id} not finished after {FLOW_RUN_TIMEOUT} s: {flow_run['state_type']}"
    )


def flow_containers(client: docker.DockerClient, run_id: str) -> list:
    # prefect-docker labels each flow-run container with its run id.
    return client.containers.list(all=True, filters={"label": f"io.prefect.flow-run-id={run_id}"})


def container_logs(containers: list) -> str:
    return "\n".join(c.logs(tail=100).decode(errors="replace") for c in containers)


def keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def complete_model_versions(s3, bucket: str) -> list[str]:
    """Model versions with model, vectorizer and manifest all in the bucket."""
    model_keys = set(keys(s3, bucket, "models/"))
    versions = {key.split("/")[1] for key in model_keys if key.count("/") >= 2}
    return [
        v
        for v in versions
        if {f"models/{v}/{name}" for name in ("model.pkl", "vectorizer.pkl", "manifest.json")}
        <= model_keys
    ]


def assert_bucket_after_runs(s3, bucket: str) -> None:
    """After a training and an hourly inference run: complete, signed model versions, and the
    file the seed dropped into incoming/ predicted once (83,827 trips) and recorded as done."""
    versions = complete_model_versions(s3, bucket)
    assert versions, keys(s3, bucket, "models/")
    assert all(
        f"models/{v}/manifest.json.sig" in keys(s3, bucket, f"models/{v}/") for v in versions
    )
    hourly = [
        k
        for k in keys(s3, bucket, "predictions/incoming/green_tripdata_2021-03.parquet/")
        if k.endswith(".parquet")
    ]
    assert len(hourly) == 1, keys(s3, bucket, "predictions/")
    predicted = pd.read_parquet(
        io.BytesIO(s3.get_object(Bucket=bucket, Key=hourly[0])["Body"].read())
    )
    assert len(predicted) == 83_827
    # (folders below incoming/ are other runs' prefixes)
    done = [k for k in keys(s3, bucket, "processed/incoming/") if k.count("/") == 2]
    assert done == ["processed/incoming/green_tripdata_2021-03.parquet.json"], done
    # Its monitoring record, next to the predictions it describes (docs/monitoring.md).
    record_key = "monitoring/" + hourly[0].removesuffix(".parquet") + ".json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=record_key)["Body"].read())
    assert record["rows"] == 83_827 and record["input"].endswith(
        "incoming/green_tripdata_2021-03.parquet"
    ), record
    assert record["realized_rmse"] is not None and isinstance(record["drift_detected"], bool), (
        record
    )
    assert "monitoring/plots/monitoring.png" in keys(s3, bucket, "monitoring/plots/")


def _instant(value: str) -> float:
    """Seconds since the epoch of an ISO timestamp from the Prefect API or Docker (whose
    nanoseconds fromisoformat does not take)."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value)).timestamp()


# The phases of trigger -> Completed, from the server's state timestamps and the container's start.
PHASES = (
    "polling (trigger -> Pending)",
    "container start (Pending -> started)",
    "python start + imports (started -> Running)",
    "flow itself (Running -> Completed)",
    "trigger -> Completed",
)


def run_breakdown(
    api_url: str, client: docker.DockerClient, flow_run: dict, auth: Auth = None
) -> dict[str, float]:
    """Where the time from creating a completed run to its Completed state went: waiting for the
    worker's poll (Scheduled -> Pending, which the worker sets when it takes the run), creating
    and starting the container, the interpreter and the imports until the engine proposes
    Running, and the flow itself."""
    states = api(
        "GET", f"{api_url}/flow_run_states/", params={"flow_run_id": flow_run["id"]}, auth=auth
    )
    first = {}
    for state in sorted(states, key=lambda st: _instant(st["timestamp"])):
        first.setdefault(state["type"], _instant(state["timestamp"]))
    containers = flow_containers(client, flow_run["id"])
    assert len(containers) == 1, containers
    started = _instant(containers[0].attrs["State"]["StartedAt"])
    created = _instant(flow_run["created"])
    return dict(
        zip(
            PHASES,
            (
                first["PENDING"] - created,
                started - first["PENDING"],
                first["RUNNING"] - started,
                first["COMPLETED"] - first["RUNNING"],
                first["COMPLETED"] - created,
            ),
            strict=True,
        )
    )


def breakdown_table(label: str, runs: list[dict[str, float]]) -> str:
    """The runs' phases, one column per run, and their medians."""
    lines = [
        f"  {label}: trigger -> Completed, {len(runs)} runs on a warm worker (s)",
        f"    {'phase':46s}"
        + "".join(f"{'run ' + str(i + 1):>8s}" for i in range(len(runs)))
        + f"{'median':>8s}",
    ]
    for phase in PHASES:
        values = [run[phase] for run in runs]
        lines.append(
            f"    {phase:46s}"
            + "".join(f"{v:8.1f}" for v in values)
            + f"{statistics.median(values):8.1f}"
        )
    return "\n".join(lines)


def image_size_line(client: docker.DockerClient, image: str) -> str:
    size = client.images.get(image).attrs["Size"]
    return f"  image {image}: {size / 1e6:.0f} MB"
