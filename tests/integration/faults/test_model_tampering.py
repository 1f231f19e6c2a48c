"""Model versions altered in the bucket by someone (hostile pickles, edited manifests, versions
published without the signing key) are refused before anything is unpickled; the signing key,
from a Secret block, never shows in a log, an artifact or the bucket.

The hostile pickles leave a trace when unpickled (they create a directory), so "refused before
unpickling" is checked by the trace's absence, and each test shows that the same bytes do leave
it when unpickled.

A new test of a model version that was tampered with, or of where the signing key may appear,
belongs here; models that fail to load for other reasons are in test_retries.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

import pytest

from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelRegistry
from tests.integration import prefect_api as api
from tests.integration.faults.runs import failed, ran_once
from tests.paths import YELLOW_FEB, YELLOW_JAN

SIGNING_KEY = "fault-table-signing-key-" + "k" * 16


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


def test_signing_key_from_a_secret_block_and_no_secret_in_logs_or_artifacts(
    prefect_api, bucket_env, monkeypatch, capfd
):
    from prefect.blocks.system import Secret

    from flows.inference import inference_flow
    from flows.training import training_flow

    key = "sign-" + secrets.token_urlsafe(32)
    block = f"taxi-signing-key-{secrets.token_hex(4)}"
    Secret(value=key).save(block)
    monkeypatch.setenv("TAXI_SIGNING_KEY_BLOCK", block)

    trained = training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True)
    assert trained.is_completed()
    version = trained.result()["model_version"]
    manifest = bucket_env.get(f"models/{version}/manifest.json")
    signature = json.loads(bucket_env.get(f"models/{version}/manifest.json.sig"))["signature"]
    assert signature == hmac.new(key.encode(), manifest, hashlib.sha256).hexdigest()
    predicted = inference_flow(str(YELLOW_FEB), return_state=True)
    assert predicted.is_completed()

    # The same bucket read with another key (from the environment this time) is refused, once.
    wrong = "wrong-" + secrets.token_urlsafe(32)
    monkeypatch.delenv("TAXI_SIGNING_KEY_BLOCK")
    monkeypatch.setenv("TAXI_SIGNING_KEY", wrong)
    refused = inference_flow(str(YELLOW_FEB), return_state=True)
    assert refused.is_failed() and "does not match the configured signing key" in refused.message
    [load] = failed(api.task_runs(refused.state_details.flow_run_id, "load-model", until=failed))
    assert load.run_count == 1

    secret_values = [
        key,
        wrong,
        os.environ["AWS_SECRET_ACCESS_KEY"],
        os.environ["AWS_ACCESS_KEY_ID"],
    ]
    texts: list[str] = []
    for state in (trained, predicted, refused):
        run = state.state_details.flow_run_id
        messages = api.logs(run)
        texts += messages
        texts += [f"{a.data} {a.description}" for a in api.artifacts(run)]
        texts += [
            f"{json.dumps(r.parameters, default=str)} {r.state.message}" for r in api.flow_runs(run)
        ]
    texts.append(capfd.readouterr().err)
    joined = "\n".join(texts)
    # Non-vacuous: the runs did log and publish what they were meant to.
    assert f"Published model version {version} (signed)" in joined
    assert "checksums and signature verified" in joined
    for value in secret_values:
        assert value not in joined
    for item in bucket_env.list_objects(""):
        body = bucket_env.get(item["Key"])
        assert not any(value.encode() in body for value in secret_values), item["Key"]


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
    ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(trace, hostile)


def test_with_a_signing_key_a_version_published_without_it_is_refused_before_unpickling(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch
):
    """Someone who can write to the bucket but has no key publishes a complete version (its
    manifest, checksums and `latest` consistent) whose model is a hostile pickle."""
    from flows.inference import inference_flow

    trace = tmp_path / "unpickled"
    intruder = ModelRegistry(ObjectStore(bucket_env.bucket))
    forged = intruder.save_model(
        _LeavesTrace(trace), small_model.vectorizer, metrics={}, details={"model_type": "linear"}
    )
    assert intruder.latest_marker()["version"] == forged["version"]
    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert f"model version '{forged['version']}' is not signed" in state.message
    ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(
        trace, bucket_env.get(forged["objects"]["model.pkl"]["key"])
    )


def test_a_tampered_manifest_loaded_by_version_id_is_refused_before_unpickling(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch
):
    """The manifest of a signed version is edited to vouch for a hostile model object, and
    the version is asked for by its id (no latest.json checksum on that path): the signature
    refuses it."""
    from flows.inference import inference_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)
    registry = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    manifest = registry.save_model(
        small_model.model, small_model.vectorizer, metrics={}, details={"model_type": "linear"}
    )
    version = manifest["version"]
    registry.save_model(
        small_model.model, small_model.vectorizer, metrics={}, details={"model_type": "linear"}
    )
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
    ran_once(state.state_details.flow_run_id, "load-model")
    _assert_no_trace_and_that_unpickling_leaves_one(trace, hostile)
