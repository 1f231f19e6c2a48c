"""Helpers shared by the Docker end-to-end tests (real engine, real servers)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pandas as pd
import pytest

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
    env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH or not k.startswith(("PREFECT_", "AWS_", "TAXI_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


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
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
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


def api(method: str, url: str, **kwargs) -> dict | list:
    """One Prefect REST call. The server answers 503 for errors it declares
    retryable (e.g. SQLite busy while a worker writes): retry those, as
    Prefect's own client does."""
    for attempt in range(10):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response.json()


def deployment(api_url: str, name: str) -> dict:
    found = api("POST", f"{api_url}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}})
    assert len(found) == 1, f"expected one deployment {name!r}, got {found}"
    return found[0]


def run_deployment(api_url: str, deployment_id: str) -> dict:
    """Create a flow run of the deployment and wait for its final state."""
    run_id = api("POST", f"{api_url}/deployments/{deployment_id}/create_flow_run", json={})["id"]
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while time.monotonic() < deadline:
        flow_run = api("GET", f"{api_url}/flow_runs/{run_id}")
        if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} not finished after {FLOW_RUN_TIMEOUT} s: {flow_run['state_type']}")


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
        v for v in versions if {f"models/{v}/{name}" for name in ("model.pkl", "vectorizer.pkl", "manifest.json")} <= model_keys
    ]


def assert_bucket_after_runs(s3, bucket: str) -> None:
    """After a training and an hourly inference run: complete, signed model versions, and the
    file the seed dropped into incoming/ predicted once (83,827 trips) and recorded as done."""
    versions = complete_model_versions(s3, bucket)
    assert versions, keys(s3, bucket, "models/")
    assert all(f"models/{v}/manifest.json.sig" in keys(s3, bucket, f"models/{v}/") for v in versions)
    hourly = [k for k in keys(s3, bucket, "predictions/incoming/green_tripdata_2021-03/") if k.endswith(".parquet")]
    assert len(hourly) == 1, keys(s3, bucket, "predictions/")
    predicted = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=hourly[0])["Body"].read()))
    assert len(predicted) == 83_827
    assert keys(s3, bucket, "processed/incoming/") == ["processed/incoming/green_tripdata_2021-03.parquet.json"]
