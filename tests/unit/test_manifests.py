"""A model version's manifest, signature and `latest` marker as bytes: made and checked
without a bucket (taxi.storage.manifests)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest

from taxi.config import MODEL_FORMATS
from taxi.storage.errors import IntegrityError, StorageError
from taxi.storage.manifests import (
    MIN_SIGNING_KEY_BYTES,
    SIGNATURE_ALGORITHM,
    InvalidVersionError,
    UnsupportedModelError,
    check_manifest_checksum,
    check_model_format,
    check_object,
    check_signature,
    check_signing_key,
    check_version_id,
    is_version_id,
    json_body,
    library_versions,
    manifest_signature,
    marker_body,
    new_manifest,
    new_version_id,
    parse_manifest,
    parse_marker,
    signature_body,
)
from taxi.storage.objects import sha256_hex

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
VERSION = "20260101T120000Z-1a2b3c"
EXAMPLE = "20260101T120000Z-1a2b3c"  # the id every version-id error shows as an example
OTHER_VERSION = "20260102T120000Z-4d5e6f"
URI = f"s3://bucket/models/{VERSION}/manifest.json"
SIG_URI = f"s3://bucket/models/{VERSION}/manifest.json.sig"
LATEST_URI = "s3://bucket/models/latest.json"
BAD_VERSION_IDS = [
    "../data/green",
    "20260101T120000Z-1a2b3c/../x",
    "",
    "latest",
    "latest2",
    "20260101t120000z-1A2B3C",
    "20260101T120000Z-1a2b3",
    " 20260101T120000Z-1a2b3c",
    "a" * 300,
    None,
    20260101,
]


def _objects(version: str = VERSION) -> dict:
    body = b"the model"
    key = f"models/{version}/model.pkl"
    return {"model.pkl": {"key": key, "sha256": sha256_hex(body), "bytes": len(body)}}


def _manifest_body(version: str = VERSION, **details) -> bytes:
    manifest = new_manifest(version, details, {"rmse_test": 5.0}, True, _objects(version))
    return json_body(manifest)


# --- version ids ---------------------------------------------------------------------------


def test_new_version_ids_are_sortable_unique_and_valid():
    first = new_version_id(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC))
    assert first.startswith("20260101T120000Z-") and is_version_id(first)
    assert check_version_id(first) == first
    later = new_version_id(datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC))
    assert first < later
    assert len({new_version_id() for _ in range(50)}) == 50
    assert is_version_id(new_version_id())


@pytest.mark.parametrize("bad", BAD_VERSION_IDS)
def test_bad_version_ids_are_refused_without_echoing_them(bad):
    assert not is_version_id(bad)
    with pytest.raises(InvalidVersionError) as error:
        check_version_id(bad)
    # The message is the same whatever was passed: the value is never echoed.
    expected = f"model_version must be 'latest' or a model version id such as {EXAMPLE!r}"
    assert str(error.value) == expected
    with pytest.raises(InvalidVersionError, match="^version must be a model version id such as"):
        check_version_id(bad, "version must be a model version id")


def test_an_invalid_version_is_a_value_error_not_a_storage_error():
    # Bad input: never retried as a storage failure may be.
    assert issubclass(InvalidVersionError, ValueError)
    assert not issubclass(InvalidVersionError, StorageError)


# --- signing keys and signatures -----------------------------------------------------------


def test_short_signing_keys_are_refused_without_echoing_them():
    assert check_signing_key(None) is None
    assert check_signing_key(b"x" * MIN_SIGNING_KEY_BYTES) == b"x" * MIN_SIGNING_KEY_BYTES
    with pytest.raises(ValueError, match="at least 16 bytes") as error:
        check_signing_key(b"short-key")
    assert "short-key" not in str(error.value)
    with pytest.raises(ValueError):
        check_signing_key(b"x" * (MIN_SIGNING_KEY_BYTES - 1))


def test_the_signature_file_is_the_hmac_of_the_manifest_bytes():
    body = _manifest_body()
    expected = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert manifest_signature(KEY, body) == expected
    assert manifest_signature(OTHER_KEY, body) != expected
    stored = signature_body(KEY, body)
    # As earlier releases wrote it (and read it back).
    as_written = {"algorithm": "HMAC-SHA256", "signature": expected}
    assert stored == json.dumps(as_written, indent=2).encode()
    check_signature(stored, body, KEY, VERSION, SIG_URI)


def test_a_tampered_manifest_does_not_match_its_signature():
    body = _manifest_body()
    signature = signature_body(KEY, body)
    tampered = body.replace(b'"rmse_test": 5.0', b'"rmse_test": 0.1')
    assert tampered != body
    with pytest.raises(IntegrityError, match="does not match the configured signing key") as error:
        check_signature(signature, tampered, KEY, VERSION, SIG_URI)
    assert f"model version '{VERSION}' ({SIG_URI})" in str(error.value)


def test_a_manifest_signed_with_another_key_is_refused():
    body = _manifest_body()
    with pytest.raises(IntegrityError, match="altered or signed with another key"):
        check_signature(signature_body(OTHER_KEY, body), body, KEY, VERSION, SIG_URI)


SIGNATURE_FILES = {
    "non-ascii": json.dumps({"algorithm": "HMAC-SHA256", "signature": "é" * 64}).encode(),
    "not-utf8": b"\xff\xfe\x00garbage",
    "not-json": b"HMAC-SHA256 0123",
    "a-list": b'["HMAC-SHA256", "00"]',
    "a-number": json.dumps({"algorithm": "HMAC-SHA256", "signature": 12}).encode(),
    "too-short": json.dumps({"algorithm": "HMAC-SHA256", "signature": "ab" * 8}).encode(),
    "too-long": json.dumps({"algorithm": "HMAC-SHA256", "signature": "ab" * 33}).encode(),
    "upper-case": json.dumps({"algorithm": "HMAC-SHA256", "signature": "AB" * 32}).encode(),
    "not-hex": json.dumps({"algorithm": "HMAC-SHA256", "signature": "zz" * 32}).encode(),
    "no-signature": json.dumps({"algorithm": "HMAC-SHA256"}).encode(),
}


@pytest.mark.parametrize("name", SIGNATURE_FILES)
def test_a_malformed_signature_file_is_an_integrity_error_that_never_echoes_it(name):
    body = _manifest_body()
    with pytest.raises(IntegrityError) as error:
        check_signature(SIGNATURE_FILES[name], body, KEY, VERSION, SIG_URI)
    refusing = f"refusing to load model version {VERSION!r}"
    assert str(error.value) == f"{SIG_URI} is not a signature file: {refusing}"


def test_a_signature_of_another_algorithm_is_refused():
    body = _manifest_body()
    recorded = {"algorithm": "HMAC-MD5", "signature": manifest_signature(KEY, body)}
    with pytest.raises(IntegrityError, match=f"does not use {SIGNATURE_ALGORITHM}: refusing"):
        check_signature(json_body(recorded), body, KEY, VERSION, SIG_URI)


# --- the latest marker ---------------------------------------------------------------------


def test_the_marker_names_the_version_and_its_manifest_checksum():
    body = marker_body(VERSION, "ab" * 32)
    marker = json.loads(body)
    assert list(marker) == ["version", "manifest", "manifest_sha256", "updated_at"]
    assert marker["manifest"] == f"models/{VERSION}/manifest.json"
    assert body == json.dumps(marker, indent=2).encode()
    assert parse_marker(body, LATEST_URI) == marker


def test_a_marker_written_by_an_earlier_release_still_parses():
    body = b'{\n  "version": "20260101T120000Z-1a2b3c",\n  "manifest_sha256": null\n}'
    assert parse_marker(body, LATEST_URI)["version"] == VERSION


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "is not a model marker (not JSON)"),
        (b"\xff\xfe", "is not a model marker (not JSON)"),
        (b'["a"]', "does not name a valid model version id"),
        (b'{"version": "../../incoming/x"}', "does not name a valid model version id"),
        (b'{"version": 7}', "does not name a valid model version id"),
        (b"{}", "does not name a valid model version id"),
        (json_body({"version": VERSION, "manifest_sha256": 12}), "has a malformed manifest_sha256"),
    ],
)
def test_a_malformed_marker_is_refused_by_name(body, says):
    with pytest.raises(IntegrityError, match="^" + re.escape(f"{LATEST_URI} {says}")):
        parse_marker(body, LATEST_URI)


# --- manifests -----------------------------------------------------------------------------


def test_a_new_manifest_keeps_its_stored_form():
    details = {"model_type": "linear", "train_rows": 10}
    manifest = new_manifest(VERSION, details, {"rmse_test": 5.0}, False, _objects())
    assert list(manifest) == [
        "version",
        "created_at",
        "model_type",
        "train_rows",
        "metrics",
        "promoted",
        "library_versions",
        "objects",
    ]
    assert manifest["version"] == VERSION and manifest["promoted"] is False
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert json_body(manifest) == json.dumps(manifest, indent=2, sort_keys=False).encode()
    assert parse_manifest(json_body(manifest), VERSION, URI) == manifest


def test_library_versions_name_python_and_the_libraries_that_load_a_model():
    versions = library_versions()
    assert {"python", "scikit-learn", "xgboost-cpu", "numpy", "pandas", "pyarrow"} <= set(versions)
    assert all(isinstance(value, str) and value for value in versions.values())


def test_a_manifest_is_checked_against_the_marker_checksum():
    body = _manifest_body()
    check_manifest_checksum(body, sha256_hex(body), URI, LATEST_URI)
    check_manifest_checksum(body, None, URI, LATEST_URI)  # a marker from before checksums
    tampered = body.replace(b"5.0", b"0.1")
    expected = f"{URI} does not match the checksum recorded in {LATEST_URI}"
    with pytest.raises(IntegrityError, match=f"^{re.escape(expected)}$"):
        check_manifest_checksum(tampered, sha256_hex(body), URI, LATEST_URI)


def test_a_manifest_of_another_version_is_refused():
    refused = f"is the manifest of another model version: refusing to load it as '{VERSION}'"
    with pytest.raises(IntegrityError, match=refused):
        parse_manifest(_manifest_body(OTHER_VERSION), VERSION, URI)


def test_a_manifest_listing_objects_of_another_version_is_refused():
    manifest = json.loads(_manifest_body(OTHER_VERSION))
    manifest["version"] = VERSION  # its objects still point into the other version
    with pytest.raises(IntegrityError, match=f"lists objects outside model version '{VERSION}'"):
        parse_manifest(json_body(manifest), VERSION, URI)


@pytest.mark.parametrize(
    "objects",
    [None, [], "model.pkl", {"model.pkl": "key"}, {"model.pkl": {"key": f"models/{VERSION}/x"}}],
)
def test_a_manifest_with_malformed_objects_is_refused(objects):
    manifest = json.loads(_manifest_body())
    manifest["objects"] = objects
    with pytest.raises(IntegrityError, match="lists objects outside model version"):
        parse_manifest(json_body(manifest), VERSION, URI)


@pytest.mark.parametrize("body", [b"not json", b"\xff", b"[1, 2]", b'"a string"'])
def test_a_manifest_that_is_no_json_object_is_refused(body):
    with pytest.raises(IntegrityError, match=f"^{URI} is (not a manifest|the manifest of another)"):
        parse_manifest(body, VERSION, URI)


def test_an_object_is_checked_against_its_manifest_entry():
    entry = _objects()["model.pkl"]
    assert check_object(b"the model", entry, "s3://b/k") == b"the model"
    with pytest.raises(IntegrityError, match="^s3://b/k does not match the sha256 in its manifest"):
        check_object(b"not the model", entry, "s3://b/k")
    with pytest.raises(IntegrityError):
        check_object(b"", entry, "s3://b/k")


# --- model formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    [
        {"model_type": "linear"},  # saved before model formats were recorded
        {"model_type": "linear", "model_format": MODEL_FORMATS["linear"]},
        {"model_type": "gbm", "model_format": MODEL_FORMATS["gbm"]},
        {"model_type": "some-future-type", "model_format": "x-9"},  # not ours to judge
        {},
    ],
)
def test_loadable_model_formats_pass(manifest):
    check_model_format(VERSION, manifest)


def test_a_gbm_version_from_before_model_formats_says_to_retrain():
    with pytest.raises(UnsupportedModelError) as error:
        check_model_format(VERSION, {"model_type": "gbm"})
    message = str(error.value)
    assert f"model version '{VERSION}' is a gbm model saved in a format from before" in message
    assert f"(it reads {MODEL_FORMATS['gbm']!r})" in message
    assert "retrain it with the training flow (model_type='gbm')" in message


@pytest.mark.parametrize("saved", ["xgboost-ubj-0", "linear-1", "pickle"])
def test_an_unknown_format_is_named_and_refused(saved):
    with pytest.raises(UnsupportedModelError, match=f"saved in format '{saved}', which this"):
        check_model_format(VERSION, {"model_type": "gbm", "model_format": saved})


def test_an_unsupported_model_is_a_storage_error():
    # The flows report it as a storage error with its own message, never retried.
    assert issubclass(UnsupportedModelError, StorageError)
