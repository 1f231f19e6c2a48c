"""The object store, the model registry and the predictions writer against a real S3 server
over HTTP."""

from __future__ import annotations

import io
import json
import os

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from taxi import run_training
from taxi.layout import source_name
from taxi.seed import seed_bucket
from taxi.storage.errors import IntegrityError
from taxi.storage.objects import ObjectStore, sha256_hex
from taxi.storage.predictions import write_predictions
from taxi.storage.registry import ModelNotFoundError
from tests.paths import DATA, YELLOW_FEB, YELLOW_JAN


@pytest.fixture(scope="module")
def trained():
    return run_training(str(YELLOW_JAN), str(YELLOW_FEB))


def _save(registry, trained, **kwargs):
    return registry.save_model(
        trained.model,
        trained.vectorizer,
        metrics=trained.metrics,
        details={"model_type": "linear"},
        **kwargs,
    )


def test_credentials_are_enforced(s3_server, store):
    wrong = boto3.client(
        "s3",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="wrong-secret",
    )
    with pytest.raises(ClientError):
        wrong.list_objects_v2(Bucket=store.bucket)


def test_save_model_writes_objects_manifest_and_moves_latest(store, registry, trained):
    manifest = _save(registry, trained)
    version = manifest["version"]
    keys = set(store.list_keys(f"models/{version}/"))
    assert keys == {
        f"models/{version}/{n}"
        for n in ("model.pkl", "vectorizer.pkl", "metrics.json", "manifest.json")
    }
    stored = json.loads(store.get(f"models/{version}/manifest.json"))
    assert stored == manifest
    for entry in manifest["objects"].values():
        assert sha256_hex(store.get(entry["key"])) == entry["sha256"]
    assert manifest["metrics"] == trained.metrics
    assert {"scikit-learn", "pandas", "numpy", "python"} <= set(manifest["library_versions"])
    assert json.loads(store.get(f"models/{version}/metrics.json")) == trained.metrics
    assert registry.latest_marker()["version"] == version

    second = _save(registry, trained)
    assert second["version"] != version
    assert registry.latest_marker()["version"] == second["version"]


def test_load_model_round_trip(registry, trained):
    version = _save(registry, trained)["version"]
    loaded = registry.load_model()
    assert loaded.version == version
    X = loaded.vectorizer.transform(trained.test.trips)
    assert (loaded.model.predict(X) == trained.model.predict(trained.test.X)).all()
    assert registry.load_model(version).version == version


def test_unpromoted_version_leaves_latest_alone(registry, trained):
    first = _save(registry, trained)["version"]
    _save(registry, trained, promote=False)
    assert registry.latest_marker()["version"] == first


def test_missing_models_are_named(registry, trained):
    with pytest.raises(ModelNotFoundError, match="no model has been published"):
        registry.load_model()
    _save(registry, trained)
    with pytest.raises(
        ModelNotFoundError, match="model version '20990101T000000Z-abcdef' not found"
    ):
        registry.load_model("20990101T000000Z-abcdef")


def test_tampered_model_is_refused_before_unpickling(store, registry, trained):
    version = _save(registry, trained)["version"]
    store.put(f"models/{version}/model.pkl", b"not the model")
    with pytest.raises(IntegrityError, match="model.pkl does not match the sha256"):
        registry.load_model()


def test_tampered_manifest_is_refused(store, registry, trained):
    manifest = _save(registry, trained)
    manifest["objects"]["model.pkl"]["sha256"] = "0" * 64
    store.put(f"models/{manifest['version']}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(IntegrityError, match="manifest.json does not match the checksum"):
        registry.load_model()


def test_write_predictions(store):
    frame = pd.DataFrame({"PULocationID": [1, 2], "predicted_duration": [3.5, 4.5]})
    uri = write_predictions(
        store, frame, "s3://elsewhere/incoming/green_tripdata_2021-03.parquet", "v1"
    )
    assert uri == f"s3://{store.bucket}/predictions/green_tripdata_2021-03/v1.parquet"
    assert pd.read_parquet(
        io.BytesIO(store.get("predictions/green_tripdata_2021-03/v1.parquet"))
    ).equals(frame)


def test_source_name():
    assert (
        source_name("https://host/trip-data/yellow_tripdata_2021-01.parquet")
        == "yellow_tripdata_2021-01"
    )
    assert source_name("/data/x.csv.gz") == "x"


def test_seed_bucket_is_idempotent(s3_server):
    from taxi.ingest import months_present

    store = ObjectStore(bucket="seed-test")
    uris = seed_bucket(DATA, store)
    assert uris == [
        *(f"s3://seed-test/data/green/green_tripdata_2021-0{m}.parquet" for m in (1, 2, 3)),
        "s3://seed-test/incoming/green_tripdata_2021-03.parquet",
    ]
    # The months went in as the ingest flow puts them: each with its data manifest.
    assert months_present(store, "green") == [(2021, 1), (2021, 2), (2021, 3)]
    assert (
        len(store.list_keys("data/")) == 6
    )  # 3 files and their manifests; the yellow CSV excerpts are no TLC months
    assert store.list_keys("incoming/") == ["incoming/green_tripdata_2021-03.parquet"]
    before = {item["Key"]: (item["ETag"], item["LastModified"]) for item in store.list_objects("")}
    assert seed_bucket(DATA, store) == uris
    assert {
        item["Key"]: (item["ETag"], item["LastModified"]) for item in store.list_objects("")
    } == before
    assert (
        store.get("data/green/green_tripdata_2021-01.parquet")
        == (DATA / "green_tripdata_2021-01.parquet").read_bytes()
    )


def test_load_data_from_s3(store):
    from taxi import DataError, load_data

    store.put("data/yellow.csv", YELLOW_FEB.read_bytes())
    assert len(load_data(store.uri("data/yellow.csv"))) == 999
    with pytest.raises(DataError, match="file not found in S3"):
        load_data(store.uri("data/absent.parquet"))
