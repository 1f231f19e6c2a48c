"""Atomic publishing and manifest signing, against the real S3 server.

A real server cannot fail on demand between two particular writes, so the one fault injected
here is a store whose `put` fails for one chosen object; everything else is the real server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest

from taxi import process_train_data, run_training
from taxi.features import TripFeatureEncoder
from taxi.gbm import GBM_FORMAT, GBM_PARAMS, GbmRegressor
from taxi.layout import LATEST_MARKER
from taxi.storage.errors import IntegrityError, StorageError
from taxi.storage.manifests import UnsupportedModelError
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelNotFoundError, ModelRegistry
from tests.paths import YELLOW_FEB, YELLOW_JAN

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


@pytest.fixture(scope="module")
def trained():
    return run_training(str(YELLOW_JAN), str(YELLOW_FEB))


def _save(registry: ModelRegistry, trained, **kwargs) -> dict:
    return registry.save_model(
        trained.model,
        trained.vectorizer,
        metrics=trained.metrics,
        details={"model_type": "linear"},
        **kwargs,
    )


def _with(store: ObjectStore, signing_key: bytes | None) -> ModelRegistry:
    """The registry of the same bucket and client, with another signing key."""
    return ModelRegistry(store, signing_key=signing_key)


@dataclass
class FailingStore(ObjectStore):
    """Fails writing any key that ends with `fail_on`, as a crash or outage at that moment would."""

    fail_on: str = ""

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        if key.endswith(self.fail_on):
            raise StorageError(f"injected failure writing {self.uri(key)}")
        return super().put(key, body, content_type)

    def put_if_unchanged(
        self, key: str, body: bytes, etag: str | None, content_type: str = "application/json"
    ) -> bool:
        if key.endswith(self.fail_on):
            raise StorageError(f"injected failure writing {self.uri(key)}")
        return super().put_if_unchanged(key, body, etag, content_type)


@pytest.mark.parametrize(
    "fail_on",
    ["/vectorizer.pkl", "/metrics.json", "/manifest.json", "/manifest.json.sig", LATEST_MARKER],
)
def test_a_run_that_dies_midway_leaves_latest_alone(store, trained, fail_on):
    signed = _with(store, KEY)
    good = _save(signed, trained)["version"]
    failing = ModelRegistry(FailingStore(store.bucket, store.client, fail_on=fail_on), KEY)
    broken = "20260101T000000Z-dead01"
    with pytest.raises(StorageError, match="injected failure"):
        _save(failing, trained, version=broken)

    assert signed.latest_marker()["version"] == good
    assert signed.load_model().version == good
    written = {key.rsplit("/", 1)[1] for key in store.list_keys(f"models/{broken}/")}
    if fail_on == LATEST_MARKER:
        # Everything was written and verified; only the promotion failed. The version is
        # complete and loadable by id, just not `latest`.
        assert written == {
            "model.pkl",
            "vectorizer.pkl",
            "metrics.json",
            "manifest.json",
            "manifest.json.sig",
        }
        assert signed.load_model(broken).version == broken
        return
    # Whatever failed, the signature included, the version has no manifest: it never loads and
    # the cleanup removes it.
    assert "model.pkl" in written and "manifest.json" not in written
    with pytest.raises(ModelNotFoundError, match="never completed"):
        signed.load_model(broken)
    assert signed.incomplete_versions(older_than=timedelta(0)) == [broken]
    assert signed.incomplete_versions() == []  # too recent: could be a training still writing
    assert signed.delete_incomplete_versions(older_than=timedelta(0)) == [broken]
    assert store.list_keys(f"models/{broken}/") == []
    assert signed.load_model().version == good  # cleanup leaves complete versions alone


def test_concurrent_publishing_never_points_latest_at_an_incomplete_version(store, trained):
    """Two saves at once, with a reader polling `latest` the whole time: every version the
    reader sees loads completely, and both saves end complete."""
    start = threading.Barrier(3)
    versions: list[str] = []
    errors: list[BaseException] = []
    seen: set[str] = set()
    spans: list[tuple[float, float]] = []  # each save's (start, end), monotonic

    def save() -> None:
        try:
            start.wait()
            began = time.monotonic()
            versions.append(
                _save(ModelRegistry(ObjectStore(bucket=store.bucket)), trained)["version"]
            )
            spans.append((began, time.monotonic()))
        except BaseException as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    writers = [threading.Thread(target=save) for _ in range(2)]
    for writer in writers:
        writer.start()
    start.wait()
    reader = ModelRegistry(ObjectStore(bucket=store.bucket))
    while any(w.is_alive() for w in writers):
        marker = reader.latest_marker()
        if marker is not None and marker["version"] not in seen:
            seen.add(marker["version"])
            assert reader.load_model(marker["version"]).version == marker["version"]
    for writer in writers:
        writer.join()

    assert errors == [] and len(set(versions)) == 2
    # The two saves ran at the same time, and the reader saw a version while they ran.
    assert max(began for began, _ in spans) < min(end for _, end in spans), spans
    assert seen and seen <= set(versions), seen
    assert reader.latest_marker()["version"] in versions
    for version in versions:
        assert reader.load_model(version).version == version
    assert reader.incomplete_versions(older_than=timedelta(0)) == []


# --- signing ------------------------------------------------------------------------------


def test_signed_manifest_round_trip(store, trained):
    signed = _with(store, KEY)
    version = _save(signed, trained)["version"]
    manifest_bytes = store.get(f"models/{version}/manifest.json")
    signature = json.loads(store.get(f"models/{version}/manifest.json.sig"))
    assert signature == {
        "algorithm": "HMAC-SHA256",
        "signature": hmac.new(KEY, manifest_bytes, hashlib.sha256).hexdigest(),
    }
    assert signed.load_model().version == version
    assert _with(store, None).load_model().version == version  # no key: signature not checked
    assert "k" * 32 not in repr(signed)


def test_model_swapped_by_someone_without_the_key_is_refused(store, trained):
    """An attacker who can write to the bucket but has no key publishes their own version
    (complete, with consistent checksums and `latest`): a reader with the key refuses it."""
    signed = _with(store, KEY)
    legit = _save(signed, trained)["version"]
    intruder = _with(store, None)
    forged = _save(intruder, trained)["version"]
    assert intruder.latest_marker()["version"] == forged
    with pytest.raises(IntegrityError, match=f"model version '{forged}' is not signed"):
        signed.load_model()

    # Copying the legitimate signature onto the forged manifest does not help either.
    store.put(f"models/{forged}/manifest.json.sig", store.get(f"models/{legit}/manifest.json.sig"))
    with pytest.raises(IntegrityError, match="does not match the configured signing key"):
        signed.load_model()

    # Nor does editing a signed manifest and fixing up latest.json's checksum.
    manifest = json.loads(store.get(f"models/{legit}/manifest.json"))
    manifest["metrics"]["rmse_test"] = 0.1
    body = json.dumps(manifest, indent=2).encode()
    store.put(f"models/{legit}/manifest.json", body)
    signed.set_latest(legit, hashlib.sha256(body).hexdigest())
    with pytest.raises(IntegrityError, match="does not match the configured signing key"):
        signed.load_model()


def test_a_model_signed_with_another_key_is_refused(store, trained):
    _save(_with(store, OTHER_KEY), trained)
    with pytest.raises(IntegrityError, match="does not match the configured signing key"):
        _with(store, KEY).load_model()


def test_short_signing_keys_are_rejected(store):
    with pytest.raises(ValueError, match="at least 16 bytes") as error:
        _with(store, b"short-key")
    assert "short-key" not in str(error.value)


def test_a_gbm_version_saved_before_xgboost_fails_with_a_clear_error(registry, trained):
    """Versions of the gbm model from before the model format tag held pickled
    HistGradientBoostingRegressor objects: refused by the manifest, before unpickling."""
    untagged = {"model_type": "gbm"}
    old = registry.save_model(
        trained.model, trained.vectorizer, metrics=trained.metrics, details=untagged
    )["version"]
    with pytest.raises(
        UnsupportedModelError, match=f"model version '{old}' is a gbm model .* retrain it"
    ):
        registry.load_model(old)
    with pytest.raises(UnsupportedModelError, match=f"'{old}'"):
        registry.load_model()  # it is latest
    current = registry.save_model(
        trained.model,
        trained.vectorizer,
        metrics=trained.metrics,
        details={"model_type": "gbm", "model_format": GBM_FORMAT},
    )
    assert registry.load_model().version == current["version"]
    assert (
        registry.load_model(_save(registry, trained)["version"]).manifest.get("model_format")
        is None
    )  # linear: unchanged


def test_a_gbm_version_of_the_previous_xgboost_configuration_still_loads(store):
    """Versions saved before the lookup tables (unconstrained trees: 300 of depth 8 at learning
    rate 0.1, or 200 at 0.15; an encoder without the tabular features) have the same format:
    they load, verified and signed, and predict with their own trees and features exactly what
    they predicted when saved."""
    vectorizer = TripFeatureEncoder(tabular=False)
    train = process_train_data(str(YELLOW_JAN), vectorizer)
    assert "hour_block" not in train.vectorizer.get_feature_names_out()
    previous = GbmRegressor(
        n_trees=300, max_fit_rows=5_000, params=GBM_PARAMS | {"learning_rate": 0.1, "max_depth": 8}
    )
    previous.fit(train.X, train.y)
    expected = previous.predict(train.vectorizer.transform(train.trips))
    # Pickled as those versions were: no tables, no `tabular` parameter.
    del previous.tables_, train.vectorizer.tabular
    signed = _with(store, KEY)
    details = {"model_type": "gbm", "model_format": GBM_FORMAT}
    version = signed.save_model(
        previous, train.vectorizer, metrics={"rmse_test": 7.0}, details=details
    )["version"]
    loaded = signed.load_model(version)
    assert loaded.model.n_trees == 300 and loaded.model.booster_.num_boosted_rounds() == 300
    assert loaded.model.tables_ is None and loaded.vectorizer.tabular is False
    assert np.array_equal(loaded.model.predict(loaded.vectorizer.transform(train.trips)), expected)
