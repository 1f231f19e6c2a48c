"""Ingested months are verified when a training run reads them: data manifests signed like model
manifests, each window month's bytes checked against its manifest's sha256, and the hashes
recorded in the model's manifest. Against the real S3 and Prefect servers."""

from __future__ import annotations

import json
import secrets
import shutil

import pytest

from taxi.layout import data_key, data_manifest_key, data_signature_key
from taxi.seed import seed_bucket
from taxi.storage.manifests import signature_problem
from taxi.storage.objects import sha256_hex
from tests.integration import prefect_api as api
from tests.paths import DATA

KEY = secrets.token_urlsafe(32)
JAN, FEB, MAR = (2021, 1), (2021, 2), (2021, 3)


@pytest.fixture
def signed_months(prefect_api, bucket_env, monkeypatch):
    """The test's bucket with green 2021-01..03 ingested and their manifests signed with KEY,
    the key the flows are given."""
    monkeypatch.setenv("TAXI_SIGNING_KEY", KEY)
    seed_bucket(DATA, bucket_env, incoming=(), signing_key=KEY.encode())
    return bucket_env


def _train(**parameters):
    from flows.training import training_flow

    return training_flow(color="green", as_of="2021-03-15", return_state=True, **parameters)


def _refused(state, store, *expected: str) -> None:
    """The run failed with `expected` in its message, and no model version was stored."""
    assert state.is_failed(), state
    for text in expected:
        assert text in state.message, state.message
    assert store.list_keys("models/") == []


def test_signed_months_train_and_the_model_records_their_hashes(signed_months):
    store = signed_months
    for month in (JAN, FEB, MAR):
        body, signature = (
            store.get(k("green", month)) for k in (data_manifest_key, data_signature_key)
        )
        assert signature_problem(signature, body, KEY.encode()) is None
        assert signature_problem(signature, body, b"another key, 16+ bytes") is not None
    state = _train()
    assert state.is_completed(), state.message
    version = state.result()["model_version"]
    manifest = json.loads(store.get(f"models/{version}/manifest.json"))
    jan, feb = (json.loads(store.get(data_manifest_key("green", m)))["sha256"] for m in (JAN, FEB))
    assert jan == sha256_hex((DATA / "green_tripdata_2021-01.parquet").read_bytes())
    assert manifest["train_data"]["sha256"] == [jan]
    assert manifest["test_data"]["sha256"] == feb
    assert manifest["training_sample"]["months"][0]["sha256"] == jan


def test_a_month_swapped_after_ingest_is_never_trained_on(signed_months):
    store = signed_months
    # Another month's bytes under January's key: a valid TLC file, the wrong one.
    store.put(data_key("green", JAN), store.get(data_key("green", MAR)))
    _refused(
        _train(),
        store,
        f"green 2021-01 ({store.uri(data_key('green', JAN))}) does not match the sha256 of its "
        "data manifest",
        f"delete {store.uri(data_manifest_key('green', JAN))} and ingest the month again",
    )


def test_a_test_month_swapped_with_a_rewritten_manifest_is_refused_by_its_signature(
    signed_months,
):
    store = signed_months
    swapped = store.get(data_key("green", MAR))
    manifest = json.loads(store.get(data_manifest_key("green", FEB)))
    store.put(data_key("green", FEB), swapped)
    store.put(
        data_manifest_key("green", FEB),
        json.dumps({**manifest, "sha256": sha256_hex(swapped)}, indent=2).encode(),
    )
    _refused(
        _train(),
        store,
        "the data manifest of green 2021-02 is not signed with the configured signing key",
        "does not match the configured signing key",
        "ingest it again (the taxi-ingest flow, color green, start and end 2021-02)",
    )


def test_a_window_month_without_its_manifest_fails_naming_it(signed_months):
    store = signed_months
    # The test month's manifest gone (its file swapped with it, say): the window still reaches
    # February, and refuses it rather than testing on January instead.
    store.delete(data_manifest_key("green", FEB))
    _refused(
        _train(),
        store,
        "green 2021-02 has no data manifest",
        "refusing to train on it: ingest it again",
    )


def test_months_ingested_unsigned_are_refused_then_ingested_again_and_signed(
    prefect_api, bucket_env, monkeypatch, tmp_path
):
    from flows.ingest import ingest_flow

    store = bucket_env
    seed_bucket(DATA, store, incoming=())  # as an earlier release did: no signatures
    monkeypatch.setenv("TAXI_SIGNING_KEY", KEY)
    _refused(
        _train(),
        store,
        "the data manifest of green 2021-01 is not signed",
        f"({store.uri(data_signature_key('green', JAN))} does not exist)",
        "written unsigned (by an earlier release, or under TAXI_ALLOW_UNSIGNED)",
    )
    # The upgrade: ingesting the months again downloads them from the source and signs them;
    # the bytes already in the bucket are never signed as they are.
    for month in ("2021-01", "2021-02"):
        shutil.copy(DATA / f"green_tripdata_{month}.parquet", tmp_path)
    monkeypatch.setenv("TAXI_TLC_BASE_URL", str(tmp_path))
    store.put(data_key("green", JAN), store.get(data_key("green", MAR)))  # unknown bytes
    state = ingest_flow("green", "2021-01", "2021-03", return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert [e["month"] for e in summary["ingested"]] == ["2021-01", "2021-02"]
    assert summary["not_available"][0]["month"] == "2021-03"
    logs = api.logs(state.state_details.flow_run_id)
    assert any(
        "green 2021-01 is in the bucket, but its data manifest is not signed" in m for m in logs
    )
    assert (
        store.get(data_key("green", JAN)) == (DATA / "green_tripdata_2021-01.parquet").read_bytes()
    )
    state = _train()
    assert state.is_completed(), state.message
    # A rerun skips the months it signed: nothing is downloaded again.
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    state = ingest_flow("green", "2021-01", "2021-02", return_state=True)
    assert state.is_completed() and [e["month"] for e in state.result()["skipped"]] == [
        "2021-01",
        "2021-02",
    ]


def test_explicit_files_are_recorded_with_the_hashes_of_the_bytes_read(
    prefect_api, bucket_env, monkeypatch
):
    monkeypatch.setenv("TAXI_SIGNING_KEY", KEY)
    train, test = DATA / "green_tripdata_2021-01.parquet", DATA / "green_tripdata_2021-02.parquet"
    state = _train(train_path=str(train), test_path=str(test))
    assert state.is_completed(), state.message
    version = state.result()["model_version"]
    manifest = json.loads(bucket_env.get(f"models/{version}/manifest.json"))
    assert manifest["train_data"]["sha256"] == [sha256_hex(train.read_bytes())]
    assert manifest["test_data"]["sha256"] == sha256_hex(test.read_bytes())


def test_ingestion_needs_a_key_unless_unsigned_is_asked_for(
    prefect_api, bucket_env, monkeypatch, tmp_path
):
    from flows.ingest import DATA_UNSIGNED_WARNING, ingest_flow

    shutil.copy(DATA / "green_tripdata_2021-01.parquet", tmp_path)
    monkeypatch.setenv("TAXI_TLC_BASE_URL", str(tmp_path))
    for name in ("TAXI_SIGNING_KEY", "TAXI_SIGNING_KEY_BLOCK", "TAXI_ALLOW_UNSIGNED"):
        monkeypatch.delenv(name, raising=False)
    state = ingest_flow("green", "2021-01", "2021-01", return_state=True)
    assert state.is_failed() and "no model signing key" in state.message, state.message
    assert bucket_env.list_keys("") == []
    # The opt-out: the manifest is written unsigned, and the log says so.
    monkeypatch.setenv("TAXI_ALLOW_UNSIGNED", "1")
    state = ingest_flow("green", "2021-01", "2021-01", return_state=True)
    assert state.is_completed(), state.message
    assert any(DATA_UNSIGNED_WARNING in m for m in api.logs(state.state_details.flow_run_id))
    assert bucket_env.list_keys("data/") == [
        data_key("green", JAN),
        data_manifest_key("green", JAN),
    ]
