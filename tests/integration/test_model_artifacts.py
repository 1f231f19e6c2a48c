"""Model versions against hostile bucket content and concurrent publishers, on the real S3
server: malformed signature files, version ids that are not ours, manifests replayed under
another id, and `latest.json` moved by another training between our read and our write."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from taxi.layout import LATEST_KEY
from taxi.storage.errors import IntegrityError
from taxi.storage.manifests import InvalidVersionError, new_version_id
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ANY_CHAMPION, ModelRegistry
from tests.integration import prefect_api as api
from tests.paths import YELLOW_FEB, YELLOW_JAN

KEY = b"k" * 32


def _failed(runs):
    return [run for run in runs if run.state and run.state.is_failed()]


def _save(registry: ModelRegistry, model, **kwargs) -> dict:
    return registry.save_model(
        model.model,
        model.vectorizer,
        metrics=model.metrics,
        details={"model_type": "linear"},
        **kwargs,
    )


def _signed(store: ObjectStore) -> ModelRegistry:
    return ModelRegistry(ObjectStore(bucket=store.bucket, client=store.client), signing_key=KEY)


# --- malformed signature files -------------------------------------------------------------

SIGNATURE_FILES = {
    # A signature made of non-ASCII characters: hmac.compare_digest raised TypeError on it.
    "non-ascii": json.dumps({"algorithm": "HMAC-SHA256", "signature": "é" * 64}).encode(),
    "not-utf8": b"\xff\xfe\x00garbage",
    "not-json": b"HMAC-SHA256 0123",
    "a-list": b'["HMAC-SHA256", "00"]',
    "a-number": json.dumps({"algorithm": "HMAC-SHA256", "signature": 12}).encode(),
    "too-short": json.dumps({"algorithm": "HMAC-SHA256", "signature": "ab" * 8}).encode(),
}


@pytest.mark.parametrize("name", SIGNATURE_FILES)
def test_a_malformed_signature_file_is_an_integrity_error(store, small_model, name):
    registry = _signed(store)
    version = _save(registry, small_model)["version"]
    store.put(f"models/{version}/manifest.json.sig", SIGNATURE_FILES[name])

    with pytest.raises(
        IntegrityError,
        match=f"manifest.json.sig is not a signature file: refusing to load model version '{version}'",
    ):
        registry.load_model()


def test_a_malformed_signature_fails_inference_once_and_training_replaces_the_model(
    published, small_model, monkeypatch
):
    """Through the flows: inference fails with the integrity error, load-model ran once (not
    retried); the next training does not trust that champion and publishes a signed model."""
    from flows.inference import inference_flow
    from flows.training import training_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", KEY.decode())
    store, _ = published
    signed = _signed(store)
    version = _save(signed, small_model)["version"]
    store.put(f"models/{version}/manifest.json.sig", SIGNATURE_FILES["non-ascii"])

    state = inference_flow(str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert (
        "IntegrityError" in state.message
        and "is not a signature file" in state.message
        and "é" not in state.message
    )
    [load] = _failed(api.task_runs(state.state_details.flow_run_id, "load-model", until=_failed))
    assert load.run_count == 1

    trained = training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True)
    assert trained.is_completed(), trained.message
    result = trained.result()
    assert (
        result["promoted"] and result["champion_version"] is None
    )  # the untrusted champion was not compared
    assert signed.load_model().version == result["model_version"]


# --- version ids ---------------------------------------------------------------------------

BAD_VERSION_IDS = [
    "../data/green",
    "20260101T120000Z-1a2b3c/../x",
    "",
    "latest2",
    "20260101t120000z-1A2B3C",
    "a" * 300,
]


@pytest.mark.parametrize("bad", BAD_VERSION_IDS)
def test_version_ids_are_checked_as_a_parameter(store, bad):
    registry = ModelRegistry(ObjectStore(bucket=store.bucket, client=store.client))
    with pytest.raises(
        InvalidVersionError, match="model_version must be 'latest' or a model version id"
    ):
        registry.load_model(bad)
    with pytest.raises(InvalidVersionError):
        registry.load_manifest(bad)
    with pytest.raises(InvalidVersionError, match="^version must be a model version id such as"):
        registry.save_model(object(), object(), metrics={}, details={}, version=bad)
    assert store.list_keys("") == []  # nothing read or written under such a name


def test_a_bad_version_id_fails_the_inference_run_once_without_echoing_it(published):
    from flows.inference import inference_flow

    state = inference_flow(str(YELLOW_FEB), model_version="../../data/secret", return_state=True)
    assert state.is_failed()
    assert (
        "model_version must be 'latest' or a model version id such as '20260101T120000Z-1a2b3c'"
        in state.message
    )
    assert "secret" not in state.message
    [load] = _failed(api.task_runs(state.state_details.flow_run_id, "load-model", until=_failed))
    assert load.run_count == 1


@pytest.mark.parametrize(
    "marker", [{"version": "../../incoming/x"}, {"version": 7}, ["a"], "not json"]
)
def test_latest_json_naming_no_valid_version_is_refused(published, registry, marker):
    store, version = published
    store.put(
        "models/latest.json",
        marker.encode() if isinstance(marker, str) else json.dumps(marker).encode(),
    )
    with pytest.raises(
        IntegrityError,
        match="models/latest.json (does not name a valid model version id|is not a model marker)",
    ):
        registry.load_model()
    assert registry.load_model(version).version == version  # by id it still loads
    # A new publication replaces the broken marker (it names nothing to keep).
    again = registry.save_model(object(), object(), metrics={}, details={})
    assert again["promoted"] and registry.latest_marker()["version"] == again["version"]


def test_listing_ignores_prefixes_that_are_not_version_ids(published, registry):
    """Cleanup of incomplete versions only ever judges (and deletes) version folders."""
    store, version = published
    foreign = ["models/backup/model.pkl", "models/..x/notes.txt", "models/2026-01-01/model.pkl"]
    for key in foreign:
        store.put(key, b"not ours")
    incomplete = new_version_id()
    store.put(f"models/{incomplete}/model.pkl", b"half-written")
    assert registry.incomplete_versions(older_than=timedelta(0)) == [incomplete]
    assert registry.delete_incomplete_versions(older_than=timedelta(0)) == [incomplete]
    assert all(store.exists(key) for key in foreign)
    assert registry.load_model().version == version


# --- manifests bound to their version ------------------------------------------------------


def test_a_signed_manifest_replayed_under_another_version_id_is_refused(store, small_model):
    """The manifest names its version and its objects' keys, and the signature covers them:
    copying a genuinely signed manifest (and its signature) under another id gets nowhere."""
    registry = _signed(store)
    original = _save(registry, small_model)["version"]
    replay = new_version_id()
    for name in ("manifest.json", "manifest.json.sig"):
        store.put(f"models/{replay}/{name}", store.get(f"models/{original}/{name}"))

    with pytest.raises(
        IntegrityError,
        match=f"is the manifest of another model version: refusing to load it as '{replay}'",
    ):
        registry.load_model(replay)
    # ...nor through latest.json with the manifest's checksum fixed up.
    body = store.get(f"models/{replay}/manifest.json")
    registry.set_latest(replay, hashlib.sha256(body).hexdigest())
    with pytest.raises(IntegrityError, match="is the manifest of another model version"):
        registry.load_model()


def test_a_manifest_listing_objects_of_another_version_is_refused(store, small_model):
    """Without a key (checksums only) a manifest still has to list its own version's objects."""
    registry = ModelRegistry(ObjectStore(bucket=store.bucket, client=store.client))
    original = _save(registry, small_model)["version"]
    other = new_version_id()
    manifest = json.loads(store.get(f"models/{original}/manifest.json"))
    manifest["version"] = other  # its objects still point into the original version
    store.put(f"models/{other}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(IntegrityError, match=f"lists objects outside model version '{other}'"):
        registry.load_model(other)


# --- latest.json written by conditional write ----------------------------------------------


class RaceAfterRead(ObjectStore):
    """Runs `meanwhile` (another publisher moving latest.json) right after our first read of
    latest.json: the window between reading and writing that a race hits. Counts our
    conditional writes the server refused."""

    def __init__(self, store: ObjectStore, meanwhile: Callable[[], object]):
        super().__init__(bucket=store.bucket, client=store.client)
        self.meanwhile, self.raced, self.refused = meanwhile, False, 0

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        found = super().get_with_etag(key)
        if key == LATEST_KEY and not self.raced:
            self.raced = True
            self.meanwhile()
        return found

    def put_if_unchanged(
        self, key: str, body: bytes, etag: str | None, content_type: str = "application/json"
    ) -> bool:
        written = super().put_if_unchanged(key, body, etag, content_type)
        self.refused += not written
        return written


def _plain(store: ObjectStore) -> ModelRegistry:
    return ModelRegistry(ObjectStore(bucket=store.bucket, client=store.client))


def _publish(store: ObjectStore, version: str) -> None:
    """Another publisher points latest.json at `version` (a complete version)."""
    _plain(store).set_latest(
        version, hashlib.sha256(store.get(f"models/{version}/manifest.json")).hexdigest()
    )


def test_a_training_that_loses_the_race_for_latest_is_stored_not_promoted(
    published, registry, small_model
):
    """We compared with `champion`; between our read of latest.json and our write, another
    training publishes. The server refuses our stale If-Match write, we read again, see a
    version we were not compared with, and keep it: ours is complete, not promoted, no error."""
    store, champion = published
    rival = _save(_plain(store), small_model, promote=False)["version"]
    racing = RaceAfterRead(store, lambda: _publish(store, rival))

    manifest = _save(ModelRegistry(racing), small_model, champion=champion)

    assert racing.refused == 1  # the server honoured If-Match: our stale write was refused
    assert manifest["promoted"] is False
    assert registry.latest_marker()["version"] == rival
    assert (
        registry.load_model(manifest["version"]).version == manifest["version"]
    )  # stored, complete


def test_a_lost_race_is_retried_when_the_champion_is_still_latest(published, registry, small_model):
    """latest.json is rewritten (same version, new bytes and ETag) between our read and our
    write: our write is refused, we read again, the champion is still latest, we write again."""
    store, champion = published
    marker = registry.latest_marker()
    racing = RaceAfterRead(store, lambda: store.put(LATEST_KEY, json.dumps(marker).encode()))
    manifest = _save(ModelRegistry(racing), small_model, champion=champion)
    assert racing.refused == 1 and manifest["promoted"] is True
    assert registry.latest_marker()["version"] == manifest["version"]


def test_the_first_marker_is_created_with_if_none_match(store, registry, small_model):
    """No latest.json yet; another training creates it between our read and our write: our
    If-None-Match write is refused. Compared with "no model yet" (None) we leave theirs;
    compared with nothing (ANY_CHAMPION: e.g. the champion could not be trusted) we write
    again, over theirs."""
    rival = _save(_plain(store), small_model, promote=False)["version"]

    cautious = RaceAfterRead(store, lambda: _publish(store, rival))
    kept = _save(ModelRegistry(cautious), small_model, champion=None)
    assert cautious.refused == 1 and kept["promoted"] is False
    assert registry.latest_marker()["version"] == rival

    store.delete(LATEST_KEY)
    eager = RaceAfterRead(store, lambda: _publish(store, rival))
    taken = _save(ModelRegistry(eager), small_model, champion=ANY_CHAMPION)
    assert eager.refused == 1 and taken["promoted"] is True
    assert registry.latest_marker()["version"] == taken["version"]


def test_a_training_run_that_loses_the_race_completes(
    published, registry, small_model, monkeypatch
):
    """Through the training flow: another training publishes between save-model's read of
    latest.json and its write. The run ends Completed, says it was not promoted, `latest`
    names the other version, and save-model ran once (nothing failed, nothing retried)."""
    from flows.training import training_flow

    store, champion = published
    rival = _save(_plain(store), small_model, promote=False)["version"]
    put_if_unchanged = ObjectStore.put_if_unchanged
    raced: list[str] = []

    def rival_publishes_first(self, key, body, etag, content_type="application/json"):
        if key == LATEST_KEY and not raced:
            raced.append(etag)
            _publish(store, rival)
        return put_if_unchanged(self, key, body, etag, content_type)

    monkeypatch.setattr(ObjectStore, "put_if_unchanged", rival_publishes_first)
    # Tested on the trips it trained on, the new model beats the champion: it decides to promote.
    state = training_flow(str(YELLOW_FEB), str(YELLOW_FEB), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["champion_version"] == champion and raced
    assert (
        result["promoted"] is False
        and "another training moved latest meanwhile" in result["promotion_reason"]
    )
    assert registry.latest_marker()["version"] == rival
    saves = api.task_runs(
        state.state_details.flow_run_id, "save-model", until=lambda r: r and r[0].state.is_final()
    )
    assert [run.run_count for run in saves] == [1]
