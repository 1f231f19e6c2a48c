"""A model version's manifest, its signature and the `latest` marker, as bytes: making them
and checking them, without a bucket (taxi.storage.registry reads and writes them).

Every check raises with a message that names the object (its s3:// URI, given by the caller)
and the version, never the content it refused: that may be anything someone put in the bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import re
import secrets
from datetime import UTC, datetime
from importlib import metadata

from taxi.config import LOADABLE_MODEL_FORMATS, MODEL_FORMATS
from taxi.layout import MANIFEST_OBJECT, model_key
from taxi.records import LatestMarker, Manifest, ManifestDetails, StoredObject
from taxi.storage.errors import IntegrityError, StorageError
from taxi.storage.objects import sha256_hex

# What new_version_id makes: the only version ids a run parameter, latest.json or a listing
# may name (nothing like "../" can then reach a key).
VERSION_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
VERSION_ID_EXAMPLE = "20260101T120000Z-1a2b3c"
# An HMAC-SHA256, hex encoded.
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{64}")

SIGNATURE_ALGORITHM = "HMAC-SHA256"
# A shorter key is more likely a placeholder than a secret; refuse it rather than sign with it.
MIN_SIGNING_KEY_BYTES = 16

_LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy", "scipy", "pandas", "pyarrow", "boto3")


class UnsupportedModelError(StorageError):
    """A model version saved in a format this code cannot load; it has to be retrained."""


class InvalidVersionError(ValueError):
    """A model version id that new_version_id could not have made (bad input, never retried)."""


# --- version ids and keys ------------------------------------------------------------------


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique version ids: UTC time of training plus a random suffix."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def is_version_id(version: object) -> bool:
    return isinstance(version, str) and VERSION_ID.fullmatch(version) is not None


def check_version_id(
    version: object,
    expected: str = "model_version must be 'latest' or a model version id",
) -> str:
    """`version` if it is a model version id; else an error saying what was `expected` (not
    the value, which may be anything a caller typed)."""
    if not is_version_id(version):
        raise InvalidVersionError(f"{expected} such as {VERSION_ID_EXAMPLE!r}")
    return str(version)


def check_signing_key(key: bytes | None) -> bytes | None:
    """The key as given, or an error naming the problem (never the key itself)."""
    if key is not None and len(key) < MIN_SIGNING_KEY_BYTES:
        message = f"the model signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes long"
        raise ValueError(message)
    return key


# --- writing -------------------------------------------------------------------------------


def json_body(record: object) -> bytes:
    """A JSON object as stored: a manifest, a signature, a marker, metrics."""
    return json.dumps(record, indent=2).encode()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def new_manifest(
    version: str,
    details: ManifestDetails,
    metrics: dict[str, float],
    promoted: bool,
    objects: dict[str, StoredObject],
) -> Manifest:
    """The manifest of a new version: `details` as given, then what the registry records.
    `objects` maps each object's name to its key, sha256 and size."""
    return {
        "version": version,
        "created_at": utc_now(),
        **details,
        "metrics": metrics,
        "promoted": promoted,
        "library_versions": library_versions(),
        "objects": objects,
    }


def manifest_signature(key: bytes, manifest_body: bytes) -> str:
    """HMAC-SHA256 of the manifest's exact bytes, hex encoded."""
    return hmac.new(key, manifest_body, hashlib.sha256).hexdigest()


def signature_body(key: bytes, manifest_body: bytes) -> bytes:
    """The signature file of a manifest: the algorithm and the signature."""
    signature = manifest_signature(key, manifest_body)
    return json_body({"algorithm": SIGNATURE_ALGORITHM, "signature": signature})


def marker_body(version: str, manifest_sha256: str) -> bytes:
    """latest.json naming `version`, with the checksum of its manifest."""
    marker = {
        "version": version,
        "manifest": model_key(version, MANIFEST_OBJECT),
        "manifest_sha256": manifest_sha256,
        "updated_at": utc_now(),
    }
    return json_body(marker)


# --- reading -------------------------------------------------------------------------------


def parse_marker(body: bytes, uri: str) -> LatestMarker:
    """latest.json's content (`body`, read from `uri`), checked; IntegrityError (never its
    content) if malformed."""
    try:
        marker = json.loads(body)
    except ValueError as error:
        raise IntegrityError(f"{uri} is not a model marker (not JSON): refusing it") from error
    if not isinstance(marker, dict) or not is_version_id(marker.get("version")):
        raise IntegrityError(f"{uri} does not name a valid model version id: refusing it")
    if not isinstance(marker.get("manifest_sha256"), str | None):
        raise IntegrityError(f"{uri} has a malformed manifest_sha256: refusing it")
    return marker


def check_manifest_checksum(
    body: bytes,
    expected_sha256: str | None,
    uri: str,
    marker_uri: str,
) -> None:
    """Refuse a manifest (`body`, read from `uri`) whose sha256 is not the one the marker at
    `marker_uri` vouches for (no check when it vouches for none)."""
    if expected_sha256 is not None and sha256_hex(body) != expected_sha256:
        raise IntegrityError(f"{uri} does not match the checksum recorded in {marker_uri}")


SIGNATURE_MISMATCH = "does not match the configured signing key"


def signature_problem(signature_file: bytes, body: bytes, key: bytes) -> str | None:
    """What is wrong with `signature_file` as the signature of `body` with `key` (None: it
    signs those exact bytes). Whatever the file holds (not JSON, not UTF-8, other types,
    non-ASCII text) is a problem, and its content is never echoed."""
    try:
        recorded = json.loads(signature_file)
    except ValueError:
        return "is not a signature file"
    signature = recorded.get("signature") if isinstance(recorded, dict) else None
    if not isinstance(signature, str) or _SIGNATURE_HEX.fullmatch(signature) is None:
        return "is not a signature file"
    if recorded.get("algorithm") != SIGNATURE_ALGORITHM:
        return f"does not use {SIGNATURE_ALGORITHM}"
    if not hmac.compare_digest(signature.encode(), manifest_signature(key, body).encode()):
        return SIGNATURE_MISMATCH
    return None


# Both ways out of a model that the configured key does not verify; the same for every run.
KEY_RECOVERIES = (
    "retrain (the training flow publishes a version signed with the configured key) or "
    "restore the signing key it was signed with (the Secret block, or TAXI_SIGNING_KEY)"
)


def check_signature(
    signature_file: bytes,
    manifest_body: bytes,
    key: bytes,
    version: str,
    uri: str,
) -> None:
    """Refuse a manifest unless `signature_file` (read from `uri`) signs its exact bytes with
    `key` (signature_problem)."""
    problem = signature_problem(signature_file, manifest_body, key)
    if problem == SIGNATURE_MISMATCH:
        raise IntegrityError(
            f"the signature of model version {version!r} ({uri}) {SIGNATURE_MISMATCH}: the "
            "manifest was altered or signed with another key (was the key replaced?); refusing "
            f"to load it. To recover: {KEY_RECOVERIES}"
        )
    if problem is not None:
        raise IntegrityError(f"{uri} {problem}: refusing to load model version {version!r}")


def parse_manifest(body: bytes, version: str, uri: str) -> Manifest:
    """The manifest of `version` (`body`, read from `uri`), bound to where it was loaded from:
    a manifest names its own version and that version's object keys (both signed), so a
    manifest copied under another version id is refused."""
    try:
        manifest = json.loads(body)
    except ValueError as error:
        message = f"{uri} is not a manifest (not JSON): refusing to load model version {version!r}"
        raise IntegrityError(message) from error
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        another = f"{uri} is the manifest of another model version"
        raise IntegrityError(f"{another}: refusing to load it as {version!r}")
    objects = manifest.get("objects")
    entries = objects.items() if isinstance(objects, dict) else None
    if entries is None or not all(_is_object_of(version, name, entry) for name, entry in entries):
        message = f"{uri} lists objects outside model version {version!r}: refusing to load it"
        raise IntegrityError(message)
    return manifest


def _is_object_of(version: str, name: str, entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    return entry.get("key") == model_key(version, name) and isinstance(entry.get("sha256"), str)


def check_model_format(version: str, manifest: Manifest) -> None:
    """Refuse, before unpickling, a version whose manifest records a model format this code
    cannot load (taxi.config.LOADABLE_MODEL_FORMATS; model types it does not list pass)."""
    model_type = manifest.get("model_type")
    loadable = LOADABLE_MODEL_FORMATS.get(model_type) if isinstance(model_type, str) else None
    saved = manifest.get("model_format")
    if loadable is None or saved in loadable:
        return
    if isinstance(saved, str):
        saved_as = f"format {saved!r}"
    else:
        saved_as = "a format from before model formats were recorded"
    raise UnsupportedModelError(
        f"model version {version!r} is a {model_type} model saved in {saved_as}, which this "
        f"version of the code cannot load (it reads {MODEL_FORMATS[model_type]!r}): retrain it "
        f"with the training flow (model_type={model_type!r}) and use the new version"
    )


def check_object(body: bytes, entry: StoredObject, uri: str) -> bytes:
    """`body` (read from `uri`) if it matches the sha256 its manifest `entry` lists; unpickle
    or parse an object only after this."""
    if sha256_hex(body) != entry["sha256"]:
        mismatch = f"{uri} does not match the sha256 in its manifest"
        raise IntegrityError(f"{mismatch}: refusing to load it")
    return body
