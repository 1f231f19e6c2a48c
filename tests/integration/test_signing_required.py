"""A model signing key is required: refused without one, the explicit opt-out logged and
reported, and the stack's setup generating the key into its Secret block. Against the real
Prefect API and S3 server."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from taxi.settings import Settings
from tests.integration import prefect_api as api
from tests.paths import YELLOW_FEB, YELLOW_JAN

UNSIGNED_IN_LOG = "Models are NOT signed and not checked (TAXI_ALLOW_UNSIGNED=1)"
UNSIGNED_IN_REPORT = "**unsigned**: Models are NOT signed and not checked (TAXI_ALLOW_UNSIGNED=1)"


@pytest.fixture
def no_key(prefect_api, bucket_env, monkeypatch):
    """No signing key, no Secret block and no opt-out (the session runs with the opt-out)."""
    for name in ("TAXI_SIGNING_KEY", "TAXI_SIGNING_KEY_BLOCK", "TAXI_ALLOW_UNSIGNED"):
        monkeypatch.delenv(name, raising=False)
    return bucket_env


def test_without_a_key_training_and_inference_fail_before_any_work(no_key, registry, small_model):
    from flows.inference import incoming_inference_flow, inference_flow
    from flows.training import training_flow

    # A published model, so that inference would have something to load, and a file to predict.
    registry.save_model(
        small_model.model, small_model.vectorizer, metrics=small_model.metrics, details={}
    )
    no_key.put("incoming/yellow.csv", YELLOW_FEB.read_bytes())
    stored = no_key.list_keys("")
    states = [
        training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True),
        inference_flow(str(YELLOW_FEB), return_state=True),
        incoming_inference_flow("incoming/", return_state=True),
    ]
    for state in states:
        assert state.is_failed(), state
        assert "no model signing key: set TAXI_SIGNING_KEY_BLOCK" in state.message, state.message
        assert "TAXI_ALLOW_UNSIGNED=1" in state.message
        run = state.state_details.flow_run_id
        # Refused before any task ran: nothing read, trained, loaded or written.
        assert api.task_runs(run, "load-model", timeout=2) == []
        assert api.task_runs(run, "load-data", timeout=2) == []
        assert [artifact.key for artifact in api.artifacts(run) if artifact.key] == []  # no report
    # Nothing was written: no model version, predictions, claim or done-record.
    assert no_key.list_keys("") == stored


def test_the_unsigned_opt_out_is_stated_in_the_log_and_the_report(no_key, monkeypatch):
    from flows.inference import inference_flow
    from flows.training import training_flow

    monkeypatch.setenv("TAXI_ALLOW_UNSIGNED", "1")
    trained = training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True)
    assert trained.is_completed()
    version = trained.result()["model_version"]
    assert trained.result()["model_signed"] is False
    assert no_key.list_keys(f"models/{version}/") and not no_key.exists(
        f"models/{version}/manifest.json.sig"
    )
    predicted = inference_flow(str(YELLOW_FEB), return_state=True)
    assert predicted.is_completed()
    for state, report_key in (
        (trained, "taxi-training-report"),
        (predicted, "taxi-inference-report"),
    ):
        run = state.state_details.flow_run_id
        assert any(UNSIGNED_IN_LOG in message for message in api.logs(run)), api.logs(run)
        [report] = api.artifacts(run, report_key)
        assert UNSIGNED_IN_REPORT in report.data, report.data


def test_with_a_key_the_report_says_signed_and_the_log_has_no_warning(no_key, monkeypatch):
    from flows.training import training_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", secrets.token_urlsafe(32))
    trained = training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True)
    assert trained.is_completed() and trained.result()["model_signed"] is True
    run = trained.state_details.flow_run_id
    [report] = api.artifacts(run, "taxi-training-report")
    assert "Model signature: signed and checked" in report.data
    assert not any(UNSIGNED_IN_LOG in message for message in api.logs(run))


def test_stack_setup_generates_a_signing_key_into_its_block_once_and_never_prints_it(
    prefect_api, monkeypatch, capfd
):
    from prefect.blocks.system import Secret

    from deploy.stack_setup import ensure_signing_key

    monkeypatch.delenv("TAXI_SIGNING_KEY", raising=False)
    block = f"taxi-signing-key-{secrets.token_hex(4)}"
    said = asyncio.run(ensure_signing_key(Settings.from_env(), block))
    assert said == f"model signing key: generated a new key into the Secret block {block!r}"
    key = Secret.load(block).get()
    assert len(key) == 43  # 32 random bytes, URL-safe base64
    # A second start keeps it: models signed with it stay loadable.
    said = asyncio.run(ensure_signing_key(Settings.from_env(), block))
    assert said == f"model signing key: keeping the existing Secret block {block!r}"
    assert Secret.load(block).get() == key
    # The flows find it through the block.
    from flows.policy import signing_key

    monkeypatch.setenv("TAXI_SIGNING_KEY_BLOCK", block)
    assert signing_key() == key.encode()
    out = capfd.readouterr()
    assert key not in out.out + out.err
