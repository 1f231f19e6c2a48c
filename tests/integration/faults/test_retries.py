"""Which failures are retried, counted attempt by attempt: botocore's tries of one S3 call
(an event hook on the client, or the connections a local endpoint accepted) and Prefect's
runs of a task (its run_count). Permanent answers of the real S3 server (a missing bucket,
wrong credentials, access denied) and models that cannot be unpickled or verified are tried
once; an endpoint that resets connections or answers 503 SlowDown is tried 4 times per call
(botocore) and 4 times per task (Prefect).

A new test of whether, or how often, a failure is retried belongs here; what a run does while
the S3 server is down or restarting is in test_s3_outages.py."""

from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest

import devstack
from taxi.layout import LATEST_KEY
from taxi.settings import Settings
from taxi.storage import objects
from taxi.storage.errors import BucketNotFoundError, StorageError, TransientStorageError
from taxi.storage.manifests import UnsupportedModelError
from taxi.storage.objects import S3_ATTEMPTS, ObjectStore, s3_client
from tests.integration import prefect_api as api
from tests.integration.faults.runs import ran_once
from tests.paths import YELLOW_FEB


def _failed(runs):
    return [run for run in runs if run.state and run.state.is_failed()]


def _counted(client) -> Counter[str]:
    """HTTP requests the client sends, by operation: one per attempt, retries included."""
    sent: Counter[str] = Counter()

    def count(event_name: str, **_: object) -> None:
        sent[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-send.s3", count)
    return sent


def _load_model_runs(state) -> list[int]:
    runs = api.task_runs(
        state.state_details.flow_run_id, "load-model", until=lambda r: r and r[0].state.is_final()
    )
    return [run.run_count for run in runs]


def test_botocore_tries_each_call_four_times():
    """`max_attempts` in the client config counts retries, not tries (botocore 1.44)."""
    assert s3_client().meta.config.retries["total_max_attempts"] == S3_ATTEMPTS == 4


# --- permanent answers of the real server ------------------------------------------------


def test_a_missing_bucket_is_named_as_missing_and_tried_once(s3_server):
    objects = ObjectStore(bucket=f"missing-{secrets.token_hex(4)}")
    sent = _counted(objects.client)
    for call in (
        lambda: objects.exists(LATEST_KEY),
        lambda: objects.get(LATEST_KEY),
        lambda: objects.list_keys("models/"),
    ):
        with pytest.raises(BucketNotFoundError, match=f"bucket '{objects.bucket}' does not exist"):
            call()
    # HEAD answers a bare 404 for a missing bucket: exists() asks HeadBucket which it is.
    assert sent == {"HeadObject": 1, "HeadBucket": 1, "GetObject": 1, "ListObjectsV2": 1}


def test_a_missing_bucket_fails_inference_once_with_its_name(prefect_api, monkeypatch):
    from flows.inference import inference_flow

    bucket = f"missing-{secrets.token_hex(4)}"
    monkeypatch.setenv("TAXI_BUCKET", bucket)
    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"BucketNotFoundError: bucket '{bucket}' does not exist" in state.message
    assert "no model has been published" not in state.message
    assert _load_model_runs(state) == [1]


@pytest.mark.parametrize(
    ("access_key", "secret_key", "code"),
    [
        (None, "wrong-" + secrets.token_hex(8), "SignatureDoesNotMatch"),
        ("nobody-" + secrets.token_hex(4), None, "InvalidAccessKeyId"),
    ],
    ids=["wrong-secret", "unknown-key"],
)
def test_wrong_credentials_are_tried_once(store, access_key, secret_key, code):
    client = boto3.client(
        "s3",
        config=s3_client().meta.config,
        aws_access_key_id=access_key or os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret_key or os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    objects = ObjectStore(bucket=store.bucket, client=client)
    sent = _counted(client)
    with pytest.raises(StorageError, match=code) as raised:
        objects.get(LATEST_KEY)
    assert not isinstance(raised.value, TransientStorageError)
    assert (secret_key or os.environ["AWS_SECRET_ACCESS_KEY"]) not in str(raised.value)
    assert sent == {"GetObject": 1}


def test_wrong_credentials_fail_inference_once(published, monkeypatch):
    from flows.inference import inference_flow

    wrong = "wrong-" + secrets.token_urlsafe(16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    monkeypatch.setattr(
        boto3, "DEFAULT_SESSION", None
    )  # boto3's session keeps the credentials it read first
    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert (
        state.is_failed()
        and "SignatureDoesNotMatch" in state.message
        and wrong not in state.message
    )
    assert _load_model_runs(state) == [1]


@pytest.mark.parametrize(
    ("wrong", "read_error"),
    [
        (
            "AWS_SECRET_ACCESS_KEY",
            "the S3 server refused the credentials (SignatureDoesNotMatch): the secret key does not match the access key",
        ),
        (
            "AWS_ACCESS_KEY_ID",
            "the S3 server refused the credentials (InvalidAccessKeyId): it does not know the access key",
        ),
    ],
)
def test_wrong_s3_credentials_are_named_and_fail_the_run_without_retries(
    published, monkeypatch, wrong, read_error
):
    from flows.inference import inference_flow

    store, _ = published
    value = "wrong-" + secrets.token_hex(8)
    monkeypatch.setenv(wrong, value)
    # boto3's default session keeps the credentials it first read: start a new one, as a new
    # process (a flow run) would.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    check = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"

    with pytest.raises(StorageError) as refused:
        ObjectStore(bucket=store.bucket).get("models/latest.json")
    assert (
        str(refused.value)
        == f"cannot read {store.uri('models/latest.json')}: {read_error}; {check}"
    )

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"cannot read {store.uri('models/latest.json')}: {read_error}; {check}" in state.message
    assert check in state.message and value not in state.message
    # A refusal is permanent: the same credentials fail the same way on every attempt.
    ran_once(state.state_details.flow_run_id, "load-model")


@pytest.fixture(scope="module")
def scoped_s3(tmp_path_factory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """A SeaweedFS server of this module's own with two identities: an admin, and a user
    with rights on the bucket `allowed` only. Yields (endpoint, admin, scoped credentials)."""
    work = tmp_path_factory.mktemp("scoped-s3")
    admin = {
        "aws_access_key_id": "admin-" + secrets.token_hex(4),
        "aws_secret_access_key": secrets.token_urlsafe(24),
    }
    scoped = {
        "aws_access_key_id": "scoped-" + secrets.token_hex(4),
        "aws_secret_access_key": secrets.token_urlsafe(24),
    }
    identities = [
        {
            "name": "admin",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [admin],
        },
        {
            "name": "scoped",
            "actions": ["Read:allowed", "Write:allowed", "List:allowed"],
            "credentials": [scoped],
        },
    ]
    as_config = [
        {
            **identity,
            "credentials": [
                {"accessKey": c["aws_access_key_id"], "secretKey": c["aws_secret_access_key"]}
                for c in identity["credentials"]
            ],
        }
        for identity in identities
    ]
    config = work / "s3.json"
    config.write_text(json.dumps({"identities": as_config}))
    # devstack starts `weed mini` without identities; this module's server gets them through
    # a wrapper that adds -s3.config to the same command line.
    weed = work / "weed"
    weed.write_text(f'#!/bin/sh\nexec "{devstack.weed_binary()}" "$@" -s3.config="{config}"\n')
    weed.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(devstack, "weed_binary", lambda: str(weed))
        server = devstack.start_s3_server(
            work / "data", admin["aws_access_key_id"], admin["aws_secret_access_key"]
        )
    try:
        client = boto3.client("s3", endpoint_url=server.url, **admin)
        devstack.wait_until(
            lambda: [client.create_bucket(Bucket=b) for b in ("allowed", "other")], "buckets", 60
        )
        yield server.url, admin, scoped
    finally:
        server.stop()


def test_access_denied_is_tried_once(scoped_s3):
    endpoint, admin, scoped = scoped_s3
    ObjectStore(bucket="other", client=boto3.client("s3", endpoint_url=endpoint, **admin)).put(
        LATEST_KEY, b"{}"
    )
    client = boto3.client("s3", endpoint_url=endpoint, config=s3_client().meta.config, **scoped)
    allowed, other = (
        ObjectStore(bucket="allowed", client=client),
        ObjectStore(bucket="other", client=client),
    )
    allowed.put("x", b"1")  # the user works on its own bucket
    sent = _counted(client)
    with pytest.raises(StorageError, match="AccessDenied") as raised:
        other.get(LATEST_KEY)
    assert not isinstance(raised.value, TransientStorageError)
    with pytest.raises(StorageError, match="AccessDenied"):
        other.put("y", b"1")
    assert sent == {"GetObject": 1, "PutObject": 1}


# --- models that cannot be loaded ----------------------------------------------------------

UNPICKLED: list[str] = []


def _refuse_to_load() -> None:
    UNPICKLED.append("tried")
    raise pickle.UnpicklingError("this object cannot be loaded")


class FailsToUnpickle:
    """Pickles fine, raises when unpickled (as a model of a class this code lacks would)."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def test_a_model_that_cannot_be_unpickled_fails_inference_once(published, registry, small_model):
    from flows.inference import inference_flow

    store, _ = published
    version = registry.save_model(
        FailsToUnpickle(), small_model.vectorizer, metrics={}, details={}
    )["version"]
    UNPICKLED.clear()
    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert (
        f"UnsupportedModelError: s3://{store.bucket}/models/{version}/model.pkl of model version '{version}' cannot be unpickled"
        in state.message
    )
    assert _load_model_runs(state) == [1] and UNPICKLED == ["tried"]
    with pytest.raises(
        UnsupportedModelError,
        match=r"cannot be unpickled by this version of the code \(UnpicklingError\)",
    ):
        registry.load_model(version)


# --- transient failures: retried, a bounded number of times --------------------------------


@contextmanager
def fake_endpoint(answer: bytes | None) -> Iterator[tuple[str, list[int]]]:
    """A local endpoint that accepts connections and either resets each one at once
    (`answer` None) or reads one request and sends `answer`. Yields its URL and a one-item
    list counting the connections accepted. For failures the real server cannot give on
    demand; stops with the block."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted, stop = [0], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            with connection:
                if answer is None:
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )  # RST
                    continue
                connection.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        listener.close()


SLOW_DOWN = (
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN_ANSWER = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(SLOW_DOWN)}\r\n\r\n".encode()
    + SLOW_DOWN
)


@pytest.mark.parametrize(
    "answer", [None, SLOW_DOWN_ANSWER], ids=["connection-reset", "503-slow-down"]
)
def test_transient_failures_are_tried_four_times_per_call(answer, monkeypatch):
    with fake_endpoint(answer) as (endpoint, accepted):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        with pytest.raises(TransientStorageError):
            ObjectStore(bucket="any").get(LATEST_KEY)
        assert accepted[0] == S3_ATTEMPTS


def test_a_transient_failure_is_retried_by_the_task_too(prefect_api, monkeypatch):
    """Connections reset on every try: each of the load-model task's runs (1 + its retries)
    makes one S3 call of 4 tries; counted as connections the endpoint accepted."""
    from flows.inference import inference_flow

    retries = len(Settings.from_env().io_retry_delays)
    with fake_endpoint(None) as (endpoint, accepted):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed() and f"S3 endpoint {endpoint} unreachable" in state.message
    assert _load_model_runs(state) == [retries + 1]
    assert accepted[0] == (retries + 1) * S3_ATTEMPTS


def test_the_retry_condition_retries_only_transient_errors():
    """The classification the tasks' retry condition uses, on the errors the code raises."""
    import urllib.error

    from flows.policy import is_transient
    from taxi import DataError
    from taxi.errors import DeadlineError, DownloadError
    from taxi.ingest import check_base_url
    from taxi.storage.errors import IntegrityError
    from taxi.storage.manifests import InvalidVersionError
    from taxi.storage.registry import ModelNotFoundError

    transient = [
        TransientStorageError("503"),
        DownloadError("cut short"),
        DeadlineError("not downloaded within the deadline"),  # the next attempt has its own
        urllib.error.URLError(ConnectionRefusedError()),
        urllib.error.HTTPError("https://x", 503, "busy", {}, None),  # type: ignore[arg-type]
        urllib.error.HTTPError("https://x", 429, "slow down", {}, None),  # type: ignore[arg-type]
        TimeoutError(),
        ConnectionResetError(),
    ]
    permanent = [
        StorageError("AccessDenied"),
        BucketNotFoundError("no bucket"),
        IntegrityError("tampered"),
        ModelNotFoundError("none"),
        UnsupportedModelError("cannot unpickle"),
        InvalidVersionError("bad id"),
        DataError("x", "bad"),
        urllib.error.HTTPError("https://x", 404, "not found", {}, None),  # type: ignore[arg-type]
        pickle.UnpicklingError("bad pickle"),
        TypeError("a bug"),
        KeyError("a bug"),
    ]
    with pytest.raises(ValueError) as refused:
        check_base_url("http://mirror.example/trip-data")
    permanent.append(refused.value)
    assert [is_transient(error) for error in transient] == [True] * len(transient)
    assert [is_transient(error) for error in permanent] == [False] * len(permanent)


# --- hangs: each try bounded by its timeout ------------------------------------------------


def test_the_client_bounds_what_the_reliability_page_says():
    config = s3_client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}


@contextmanager
def silent_endpoint() -> Iterator[tuple[str, list[int]]]:
    """A local endpoint that accepts connections, reads the request and never answers (a hung
    server); yields its URL and a one-item list counting the connections accepted."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted, held, stop = [0], [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            held.append(connection)  # open, unanswered, until the block ends

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        for connection in held:
            connection.close()
        listener.close()


@contextmanager
def unanswered_connects() -> Iterator[str]:
    """An endpoint whose connections time out: a listener that never accepts, its queue full,
    so the kernel drops every further SYN (packets lost on the way)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(2):  # fill the accept queue (its length is the backlog + 1)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_hung_server_costs_each_try_its_read_timeout_and_no_more(monkeypatch):
    monkeypatch.setattr(objects, "S3_READ_TIMEOUT", 1)
    with silent_endpoint() as (endpoint, accepted):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        started = time.monotonic()
        with pytest.raises(TransientStorageError, match="unreachable"):
            ObjectStore(bucket="any").get(LATEST_KEY)
        took = time.monotonic() - started
    assert accepted[0] == S3_ATTEMPTS
    # 4 tries of 1 s each, plus the backoff between them (at most 0.35 s in all) and slack
    assert S3_ATTEMPTS * 1 <= took < S3_ATTEMPTS * 1 + 3, took


def test_a_dropped_connection_costs_each_try_its_connect_timeout_and_no_more(monkeypatch):
    monkeypatch.setattr(objects, "S3_CONNECT_TIMEOUT", 1)
    with unanswered_connects() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        started = time.monotonic()
        with pytest.raises(TransientStorageError, match="unreachable"):
            ObjectStore(bucket="any").get(LATEST_KEY)
        took = time.monotonic() - started
    assert S3_ATTEMPTS * 1 <= took < S3_ATTEMPTS * 1 + 3, took
