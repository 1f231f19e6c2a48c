"""A lost signing key is said, not discovered: setup never replaces the key in the Secret block
with another one unless asked, warns when the block's key does not verify `latest`, and a run
that cannot verify `latest` fails naming the cause and both ways back. Against the real Prefect
API and S3 server."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from deploy import work_pool
from deploy.signing_key import SigningKeyConflict, latest_warning, save_signing_key
from taxi.settings import Settings
from taxi.storage.registry import ModelRegistry
from tests.paths import YELLOW_FEB

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
RECOVERIES = (
    "To recover: retrain (the training flow publishes a version signed with the configured key) "
    "or restore the signing key it was signed with (the Secret block, or TAXI_SIGNING_KEY)"
)


@pytest.fixture
def block(prefect_api, monkeypatch) -> str:
    """A Secret block of this test's own holding OLD, named where deploy.work_pool saves the key."""
    name = f"taxi-signing-key-{secrets.token_hex(4)}"
    Secret(value=OLD).save(name)
    monkeypatch.setattr(work_pool, "SIGNING_KEY_BLOCK", name)
    return name


def _setup_with_key(key: str, rotate: bool) -> None:
    settings = Settings.from_env().model_copy(
        update={
            "image": "taxi-duration",
            "flow_network": "taxi-net",
            "signing_key": SecretStr(key),
        }
    )
    pool = f"taxi-pool-{secrets.token_hex(4)}"
    asyncio.run(work_pool.setup(pool, settings, rotate_signing_key=rotate))


def test_the_pool_setup_never_replaces_the_blocks_key_unless_asked(block, capfd):
    with pytest.raises(SigningKeyConflict) as refused:
        _setup_with_key(NEW, rotate=False)
    message = str(refused.value)
    assert message.startswith(
        f"error: the Secret block {block!r} holds another model signing key than TAXI_SIGNING_KEY"
    )
    assert "Unset TAXI_SIGNING_KEY to keep the block's key, or pass --rotate-signing-key" in message
    assert Secret.load(block).get() == OLD
    # The same key again is no change; asked to, setup replaces it and says what that costs.
    _setup_with_key(OLD, rotate=False)
    _setup_with_key(NEW, rotate=True)
    assert Secret.load(block).get() == NEW
    out = capfd.readouterr()
    assert f"the Secret block {block!r} holds it already" in out.out
    assert "replaced the key in the Secret block" in out.out and "retrain" in out.out
    assert OLD not in out.out + out.err + message and NEW not in out.out + out.err


def test_a_new_block_takes_the_key(prefect_api):
    name = f"taxi-signing-key-{secrets.token_hex(4)}"
    said = asyncio.run(save_signing_key(NEW, False, name))
    assert said == f"model signing key saved in the Secret block {name!r}"
    assert Secret.load(name).get() == NEW


def test_setup_warns_when_the_blocks_key_does_not_verify_latest(bucket_env, small_model):
    settings = Settings.from_env()
    assert latest_warning(NEW, settings) is None  # nothing published yet: nothing to verify
    missing = settings.model_copy(update={"bucket": f"missing-{secrets.token_hex(4)}"})
    assert latest_warning(NEW, missing) is None  # a fresh stack's bucket, not made yet
    ModelRegistry(bucket_env).save_model(  # published before signing was turned on
        small_model.model, small_model.vectorizer, metrics={}, details={}
    )
    unsigned = latest_warning(NEW, settings)
    assert unsigned is not None and "is not signed" in unsigned
    assert "To recover: retrain (the training flow publishes a version signed" in unsigned
    ModelRegistry(bucket_env, signing_key=OLD.encode()).save_model(
        small_model.model, small_model.vectorizer, metrics={}, details={}
    )
    assert latest_warning(OLD, settings) is None
    warning = latest_warning(NEW, settings)
    assert warning is not None
    assert warning.startswith("warning: the signing key of the stack cannot verify the current")
    assert "does not match the configured signing key" in warning and RECOVERIES in warning
    assert OLD not in warning and NEW not in warning


def test_a_run_that_cannot_verify_latest_names_the_cause_and_both_recoveries(
    prefect_api, bucket_env, small_model, monkeypatch
):
    from flows.inference import incoming_inference_flow, inference_flow

    ModelRegistry(bucket_env, signing_key=OLD.encode()).save_model(
        small_model.model, small_model.vectorizer, metrics={}, details={}
    )
    bucket_env.put("incoming/yellow.csv", YELLOW_FEB.read_bytes())
    monkeypatch.setenv("TAXI_SIGNING_KEY", NEW)  # the key was replaced since
    for state in (
        inference_flow(str(YELLOW_FEB), return_state=True),
        incoming_inference_flow("incoming/", return_state=True),
    ):
        assert state.is_failed(), state
        assert "does not match the configured signing key" in state.message, state.message
        assert "(was the key replaced?)" in state.message and RECOVERIES in state.message
        assert NEW not in state.message and OLD not in state.message
