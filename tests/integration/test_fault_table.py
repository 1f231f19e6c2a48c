"""Rows of the fault table (docs/reliability.md) shown through the flows, on the real Prefect API
and the real S3 server: missing inputs are not retried, save-model's cleanup keeps to its age
cut-off, signed trainings publishing at once, hostile pickles never unpickled, wrong S3
credentials named.

The hostile pickles leave a trace when unpickled (they create a directory), so "refused before
unpickling" is checked by the trace's absence, and each test shows that the same bytes do leave
it when unpickled.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import os
import pickle
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client

import taxi.storage.registry
from taxi import run_training
from taxi.storage.manifests import new_version_id
from taxi.storage.objects import ObjectStore, StorageError
from taxi.storage.registry import INCOMPLETE_VERSION_MAX_AGE, ModelRegistry
from tests.conftest import YELLOW_FEB, YELLOW_JAN
from tests.integration import prefect_api as api

SIGNING_KEY = "fault-table-signing-key-" + "k" * 16


def _failed(runs: list[Any]) -> list[Any]:
    return [run for run in runs if run.state and run.state.is_failed()]


def _ran_once(flow_run_id: Any, task: str) -> Any:
    """The failed run of `task` in the flow run, checked on the API to have run exactly once:
    one attempt, and no retry in its state history."""
    [failed] = _failed(api.task_runs(flow_run_id, task, until=_failed))

    async def history() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_run_states(failed.id)

    states = asyncio.run(history())
    assert failed.run_count == 1
    assert [state.name for state in states if state.is_running()] == ["Running"], [s.name for s in states]
    assert not any(state.name in ("AwaitingRetry", "Retrying") for state in states)
    return failed


class _LeavesTrace:
    """Unpickling this creates the directory `path`: the trace a hostile pickle leaves."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.path,)


def _assert_no_trace_and_that_unpickling_leaves_one(trace: Path, body: bytes) -> None:
    assert not trace.exists(), "the hostile pickle was unpickled"
    pickle.loads(body)  # the control: these very bytes do leave the trace when unpickled
    assert trace.is_dir()


# --- input file missing: failed once, not retried -----------------------------------------


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server over an empty directory: every file is a 404."""
    (tmp_path / "www").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["local", "http"])
def test_a_missing_input_file_fails_the_run_and_load_data_runs_once(published, tmp_path, http_server, where):
    from flows.inference import inference_flow

    source, problem = {
        "local": (str(tmp_path / "absent.parquet"), "file not found"),
        "http": (f"{http_server}/absent.parquet", "download failed with HTTP 404 (no such file?)"),
    }[where]
    state = inference_flow(source, return_state=True)
    assert state.is_failed()
    assert f"DataError: {source}: {problem}" in state.message
    _ran_once(state.state_details.flow_run_id, "load-data")


# --- save-model's cleanup of incomplete versions, with its age cut-off -----------------------


def test_save_model_removes_incomplete_versions_older_than_the_cut_off_and_keeps_younger_ones(
    prefect_api, bucket_env, small_model, monkeypatch
):
    from prefect import flow

    from flows import tasks

    # Two versions a training died in (or is still in) the middle of: objects, no manifest.
    abandoned = new_version_id()
    bucket_env.put(f"models/{abandoned}/model.pkl", b"the start of a version")
    time.sleep(1.5)  # S3 times objects to the second
    in_progress = new_version_id()
    bucket_env.put(f"models/{in_progress}/model.pkl", b"the start of a version")
    written = {item["Key"].split("/")[1]: item["LastModified"] for item in bucket_env.list_objects("models/")}
    assert written[abandoned] < written[in_progress]

    # The server cannot back-date an object by hours, so the registry's clock moves instead:
    # to the cut-off after a moment between the two writes, so the first version is older
    # than the cut-off and the second younger, however long this run takes.
    between = written[abandoned] + (written[in_progress] - written[abandoned]) / 2
    later = between + INCOMPLETE_VERSION_MAX_AGE

    class ClockAfterTheCutOff(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return later.astimezone(tz)

    monkeypatch.setattr(taxi.storage.registry, "datetime", ClockAfterTheCutOff)

    @flow(name="publish-a-model")
    def publish() -> dict[str, Any]:
        model = small_model
        return tasks.save_model(model.model, model.vectorizer, model.metrics, {"model_type": "linear"}, True, {})

    state = publish(return_state=True)
    assert state.is_completed(), state.message
    version = state.result()["version"]
    left = {key.split("/")[1] for key in bucket_env.list_keys("models/") if key.count("/") == 2}
    assert left == {version, in_progress}
    logs = api.logs(state.state_details.flow_run_id)
    assert f"Removed incomplete model versions left by failed training runs: ['{abandoned}']" in logs


# --- two signed trainings publishing at once, with the champion step ----------------------------


def _first_trips(path: Path, trips: int) -> str:
    """A CSV of the first `trips` trips of the January yellow sample."""
    path.write_text("\n".join(YELLOW_JAN.read_text().splitlines()[: trips + 1]) + "\n")
    return str(path)


@pytest.mark.parametrize("pair", ["one-better-one-worse", "both-better"])
def test_two_signed_trainings_publishing_at_once_leave_complete_versions_and_a_consistent_latest(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch, pair
):
    """A signed champion, then two trainings at once, each better than the champion (all of
    January) or worse (300 trips). Whatever the interleaving: both runs complete with complete,
    signed versions; each decides by the promotion rule against a verified champion (the one
    before both, or the other run's version if it was published first); `latest` ends on a
    promoted version and, meanwhile, only ever names complete, correctly signed ones. With one
    better and one worse run the outcome is fixed: the worse one loses to the champion and to
    the better run alike, so it is never promoted."""
    from flows.training import training_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)
    registry = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    champion_data, worse_data = _first_trips(tmp_path / "3000.csv", 3000), _first_trips(tmp_path / "300.csv", 300)
    trained = run_training(champion_data, str(YELLOW_FEB))
    worse_rmse = run_training(worse_data, str(YELLOW_FEB)).metrics["rmse_test"]
    assert worse_rmse > trained.metrics["rmse_test"] > small_model.metrics["rmse_test"]
    champion = registry.save_model(trained.model, trained.vectorizer, metrics=trained.metrics, details={"model_type": "linear"})
    second = worse_data if pair == "one-better-one-worse" else str(YELLOW_JAN)

    start = threading.Barrier(3)
    results: dict[str, Any] = {}

    def train(name: str, train_path: str) -> None:
        start.wait()
        results[name] = training_flow(train_path, str(YELLOW_FEB), return_state=True)

    runs = [threading.Thread(target=train, args=args) for args in (("first", str(YELLOW_JAN)), ("second", second))]
    for run in runs:
        run.start()
    start.wait()
    reader = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    seen = {champion["version"]}
    while any(run.is_alive() for run in runs):
        marker = reader.latest_marker()
        if marker["version"] not in seen:
            assert reader.load_model(marker["version"]).version == marker["version"]
            seen.add(marker["version"])
        time.sleep(0.02)
    for run in runs:
        run.join()

    assert {name: state.is_completed() for name, state in results.items()} == {"first": True, "second": True}, [
        state.message for state in results.values()
    ]
    first, second = results["first"].result(), results["second"].result()
    versions = {first["model_version"], second["model_version"]}
    assert len(versions) == 2
    # Both complete and signed with the key (load_model verifies the signature).
    manifests = {version: registry.load_model(version).manifest for version in versions}
    for outcome, other in ((first, second), (second, first)):
        assert outcome["champion_version"] in {champion["version"], other["model_version"]}
        better = outcome["champion_rmse_test"] - outcome["rmse_test"] > 0  # margin 0
        # The stored manifest records the decision; the run says whether `latest` names it: a
        # better version loses only a race for `latest` to the other run, and then says so.
        assert manifests[outcome["model_version"]]["promoted"] == better
        lost_race = "another training moved latest meanwhile" in outcome["promotion_reason"]
        assert outcome["promoted"] == (better and not lost_race)
        if lost_race:
            assert other["promoted"]
    latest = registry.load_model("latest").version
    assert latest in versions and manifests[latest]["promoted"]
    assert latest in {outcome["model_version"] for outcome in (first, second) if outcome["promoted"]}
    assert all(manifests[version]["promoted"] for version in seen - {champion["version"]})
    if pair == "one-better-one-worse":
        assert not second["promoted"] and latest == first["model_version"]
        assert second["model_version"] not in seen  # never latest, not even for a moment
    for state in results.values():
        assert not any("cannot be trusted" in message for message in api.logs(state.state_details.flow_run_id))
    assert registry.incomplete_versions(older_than=timedelta(0)) == []


# --- hostile pickles: refused before unpickling ------------------------------------------------


@pytest.mark.parametrize("name", ["model.pkl", "vectorizer.pkl"])
def test_a_replaced_model_object_is_refused_before_unpickling(published, tmp_path, name):
    from flows.inference import inference_flow

    store, version = published
    trace = tmp_path / "unpickled"
    hostile = pickle.dumps(_LeavesTrace(trace))
    store.put(f"models/{version}/{name}", hostile)

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"models/{version}/{name} does not match the sha256 in its manifest" in state.message
    _ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(trace, hostile)


def test_with_a_signing_key_a_version_published_without_it_is_refused_before_unpickling(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch
):
    """Someone who can write to the bucket but has no key publishes a complete version (its
    manifest, checksums and `latest` consistent) whose model is a hostile pickle."""
    from flows.inference import inference_flow

    trace = tmp_path / "unpickled"
    intruder = ModelRegistry(ObjectStore(bucket_env.bucket))
    forged = intruder.save_model(_LeavesTrace(trace), small_model.vectorizer, metrics={}, details={"model_type": "linear"})
    assert intruder.latest_marker()["version"] == forged["version"]
    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"model version '{forged['version']}' is not signed" in state.message
    _ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(trace, bucket_env.get(forged["objects"]["model.pkl"]["key"]))


def test_a_tampered_manifest_loaded_by_version_id_is_refused_before_unpickling(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch
):
    """The manifest of a signed version is edited to vouch for a hostile model object, and
    the version is asked for by its id (no latest.json checksum on that path): the signature
    refuses it."""
    from flows.inference import inference_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)
    registry = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    manifest = registry.save_model(small_model.model, small_model.vectorizer, metrics={}, details={"model_type": "linear"})
    version = manifest["version"]
    registry.save_model(small_model.model, small_model.vectorizer, metrics={}, details={"model_type": "linear"})
    assert registry.latest_marker()["version"] != version  # loaded by id, not as latest

    trace = tmp_path / "unpickled"
    hostile = pickle.dumps(_LeavesTrace(trace))
    entry = manifest["objects"]["model.pkl"]
    bucket_env.put(entry["key"], hostile)
    entry.update(sha256=hashlib.sha256(hostile).hexdigest(), bytes=len(hostile))
    bucket_env.put(f"models/{version}/manifest.json", json.dumps(manifest, indent=2).encode())

    state = inference_flow(str(YELLOW_FEB), model_version=version, return_state=True)
    assert state.is_failed()
    assert f"the signature of model version '{version}'" in state.message
    assert "does not match the configured signing key" in state.message
    _ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(trace, hostile)


# --- wrong S3 credentials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "read_error"),
    [
        (
            "AWS_SECRET_ACCESS_KEY",
            "the S3 server refused the credentials (SignatureDoesNotMatch): the secret key does not match the access key",
        ),
        ("AWS_ACCESS_KEY_ID", "the S3 server refused the credentials (InvalidAccessKeyId): it does not know the access key"),
    ],
)
def test_wrong_s3_credentials_are_named_and_fail_the_run_without_retries(published, monkeypatch, wrong, read_error):
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
    assert str(refused.value) == f"cannot read {store.uri('models/latest.json')}: {read_error}; {check}"

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"cannot read {store.uri('models/latest.json')}: {read_error}; {check}" in state.message
    assert check in state.message and value not in state.message
    # A refusal is permanent: the same credentials fail the same way on every attempt.
    _ran_once(state.state_details.flow_run_id, "load-model")
