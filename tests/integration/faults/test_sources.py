"""Hostile inputs: sources a deployment's run may not read, and remote sources too large or too
slow. On the real Prefect API and S3 server; deployment runs are executed the way a process
worker executes them (`python -m prefect.engine` with the flow run's id, the flow loaded from
the deployment's entrypoint), an HTTP(S) server on loopback stands in for remote sites.

A new test of a source a run may not read, or of a remote source that is too large, belongs
here; of one too slow, in test_download_deadline.py; trip files that are read but cannot be used
are in test_bad_inputs.py."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from typing import Any
from uuid import UUID

import boto3
import pytest
from prefect.client.orchestration import get_client

from taxi import DataError, load_data
from taxi.errors import DeadlineError
from taxi.storage.objects import ObjectStore
from tests.integration import prefect_api as api
from tests.integration.test_ingest import plain_tlc, tlc  # noqa: F401 (HTTPS and HTTP stand-ins)
from tests.paths import GREEN_FEB, GREEN_JAN, ROOT

ENGINE_TIMEOUT = 240  # seconds for the engine subprocesses to finish, on a busy 2-core machine
CONTENT_OF_PASSWD = "root:"  # every /etc/passwd starts with root's line
REFUSED_LOCAL = "local paths are not read by deployment runs unless TAXI_ALLOW_LOCAL_SOURCES=true"


async def _deployment(flow_name: str, entrypoint: str) -> UUID:
    """A deployment of the flow at `entrypoint` whose runs start in the repository, as
    prefect.yaml's pull step makes them start in the image's project directory."""
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        return await client.create_deployment(
            flow_id,
            f"{flow_name}-inputs-{secrets.token_hex(3)}",
            entrypoint=entrypoint,
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ],
        )


async def _runs(deployment_id: UUID, parameter_sets: list[dict[str, Any]]) -> list[UUID]:
    async with get_client() as client:
        return [
            (await client.create_flow_run_from_deployment(deployment_id, parameters=p)).id
            for p in parameter_sets
        ]


def _execute(run_ids: list[UUID], extra_env: dict[UUID, dict[str, str]] | None = None) -> None:
    """Run each flow run as a process worker does: the engine in a subprocess of its own."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "prefect.engine"],
            cwd=ROOT,
            env={
                **os.environ,
                "PREFECT__FLOW_RUN_ID": str(run_id),
                **(extra_env or {}).get(run_id, {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for run_id in run_ids
    ]
    deadline = time.monotonic() + ENGINE_TIMEOUT
    for process in processes:
        process.communicate(timeout=max(1, deadline - time.monotonic()))


def _final(run_id: UUID):
    async def read():
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    return asyncio.run(read())


def _no_content(run_id: UUID) -> str:
    """The run's state message, after checking that neither it nor any log line of the run
    carries a line of /etc/passwd."""
    message = _final(run_id).state.message or ""
    logs = api.logs(run_id)
    assert CONTENT_OF_PASSWD not in message and not any(
        CONTENT_OF_PASSWD in line for line in logs
    ), (message, logs)
    return message


@pytest.fixture
def other_bucket(s3_server) -> ObjectStore:
    """Another bucket on the same S3 server, holding a real trip file the flows' credentials
    could read: only the source policy keeps a deployment run out of it."""
    store = ObjectStore(bucket=f"other-{secrets.token_hex(4)}")
    store.ensure_bucket()
    store.put("data/green_tripdata_2021-02.parquet", GREEN_FEB.read_bytes())
    return store


def test_deployment_runs_read_only_their_bucket_and_https(published, other_bucket, plain_tlc):  # noqa: F811
    from flows.inference import inference_flow
    from flows.training import training_flow

    store, version = published
    store.put("data/green_tripdata_2021-02.parquet", GREEN_FEB.read_bytes())
    internal = f"{plain_tlc.base_url}/green_tripdata_2021-02.parquet"  # plain http on a loopback (internal) address
    training = asyncio.run(_deployment(training_flow.name, "flows/deployed.py:training_flow"))
    inference = asyncio.run(_deployment(inference_flow.name, "flows/inference.py:inference_flow"))
    passwd, environ = asyncio.run(
        _runs(
            training,
            [
                {"train_path": "/etc/passwd", "test_path": "/proc/self/environ"},
                {
                    "train_path": "/proc/self/environ",
                    "test_path": store.uri("data/green_tripdata_2021-02.parquet"),
                },
            ],
        )
    )
    internal_http, foreign, own, local_allowed = asyncio.run(
        _runs(
            inference,
            [
                {"input_path": internal, "model_version": version},
                {
                    "input_path": other_bucket.uri("data/green_tripdata_2021-02.parquet"),
                    "model_version": version,
                },
                {
                    "input_path": store.uri("data/green_tripdata_2021-02.parquet"),
                    "model_version": version,
                },
                {"input_path": str(GREEN_FEB), "model_version": version},
            ],
        )
    )
    _execute(
        [passwd, environ, internal_http, foreign, own, local_allowed],
        {local_allowed: {"TAXI_ALLOW_LOCAL_SOURCES": "true"}},
    )

    for run_id, source, problem in (
        (passwd, "/etc/passwd", REFUSED_LOCAL),
        (environ, "/proc/self/environ", REFUSED_LOCAL),
        (
            internal_http,
            internal,
            "only s3:// URIs in the project's bucket(s) and https:// URLs are read by deployment runs",
        ),
        (
            foreign,
            other_bucket.uri("data/green_tripdata_2021-02.parquet"),
            f"not in a bucket runs may read ('{store.bucket}'",
        ),
    ):
        run = _final(run_id)
        assert run.state.is_failed(), (source, run.state)
        message = _no_content(run_id)
        assert f"DataError: {source}: {problem}" in message, message
        assert "AWS_SECRET_ACCESS_KEY" not in message
        # Refused before anything was opened: nothing was read, nothing written.
        assert not any(line.startswith("Read ") for line in api.logs(run_id))
    assert plain_tlc.requests == []  # the internal address was never asked
    # The run's own bucket is read, and a local path when the worker's setting allows it.
    for run_id in (own, local_allowed):
        assert _final(run_id).state.is_completed(), _final(run_id).state
    assert store.exists(f"predictions/green_tripdata_2021-02/{version}.parquet")


def test_flows_called_directly_still_read_local_paths_and_never_echo_a_file(published):
    from flows.inference import inference_flow

    store, version = published
    uri = inference_flow(str(GREEN_FEB), version)
    assert uri == store.uri(
        f"predictions/green_tripdata_2021-02/{version}.parquet"
    ) and store.exists(uri.split("/", 3)[3])
    state = inference_flow("/etc/passwd", version, return_state=True)
    assert state.is_failed()
    message = _no_content(state.state_details.flow_run_id)
    assert message.startswith(
        "Flow run encountered an exception: DataError: /etc/passwd: not a readable CSV file"
    )


def _count_get_object_calls() -> list[str]:
    """Keys of the GetObject calls made from now on by clients of boto3's default session
    (taxi.storage's clients are)."""
    calls: list[str] = []
    boto3._get_default_session().events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **_: calls.append(params["Key"]),
        unique_id="count-get-object",
    )
    return calls


def test_an_s3_source_over_the_size_cap_is_refused_before_it_is_read(bucket_env, monkeypatch):
    store = bucket_env
    store.put("incoming/big.parquet", GREEN_JAN.read_bytes())  # 1,333,519 bytes
    monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", "1000000")
    gets = _count_get_object_calls()
    try:
        with pytest.raises(
            DataError, match=r"big.parquet: is 1,333,519 bytes, more than the 1,000,000-byte limit"
        ):
            load_data(store.uri("incoming/big.parquet"))
        assert gets == []  # the size came from a HEAD request; not a byte was read
        # Above its 2,013,231 bytes uncompressed too: that is capped as well.
        monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", "3000000")
        assert len(load_data(store.uri("incoming/big.parquet"))) == 76_518
        assert gets == ["incoming/big.parquet"]
    finally:
        boto3._get_default_session().events.unregister(
            "before-parameter-build.s3.GetObject", unique_id="count-get-object"
        )


def test_an_http_source_over_the_size_cap_or_past_its_deadline_is_cut_off(tlc, monkeypatch):  # noqa: F811
    name = GREEN_JAN.name
    url = f"{tlc.base_url}/{name}"
    monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", "1000000")
    # Announced too large (Content-Length): refused before the body is read.
    with pytest.raises(DataError, match=r"is 1,333,519 bytes, more than the 1,000,000-byte limit"):
        load_data(url)
    # Not announced: counted as it streams in, and cut off once past the cap.
    tlc.behaviour[name] = "unannounced"
    with pytest.raises(DataError, match=r"is more than the 1,000,000-byte limit"):
        load_data(url)
    monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", "3000000")  # above its uncompressed size too
    assert len(load_data(url)) == 76_518
    # Trickling (a kilobyte every 0.2 s: about 4.5 minutes for this file): ended at the deadline.
    tlc.behaviour[name] = "trickle"
    monkeypatch.setenv("TAXI_DOWNLOAD_DEADLINE_SECONDS", "2")
    started = time.monotonic()
    with pytest.raises(DeadlineError, match="not downloaded within the deadline of 2 s"):
        load_data(url)
    assert time.monotonic() - started < 2 + 3
    assert tlc.requests.count(name) == 4


def test_a_source_past_its_deadline_is_retried_each_attempt_bounded(published, tlc, monkeypatch):  # noqa: F811
    from flows.inference import inference_flow

    store, version = published
    tlc.behaviour[GREEN_JAN.name] = "trickle"
    monkeypatch.setenv("TAXI_DOWNLOAD_DEADLINE_SECONDS", "2")
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "1")  # one retry, a second later
    state = inference_flow(f"{tlc.base_url}/{GREEN_JAN.name}", version, return_state=True)
    assert (
        state.is_failed()
        and "DeadlineError" in state.message
        and "not downloaded within the deadline of 2 s" in state.message
    )
    [load] = api.task_runs(
        state.state_details.flow_run_id,
        "load-data",
        until=lambda runs: any(r.state.is_failed() for r in runs),
    )
    # The server may pass, so the task's retry policy applies; each attempt has its deadline.
    assert load.state.is_failed() and load.run_count == 2
    assert tlc.requests.count(GREEN_JAN.name) == 2
    assert store.list_keys("predictions/") == []
