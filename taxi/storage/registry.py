"""Model versions on top of the object store: manifest, checksums, signing, `latest`.

A version is published in this order: every object written and read back with a matching
sha256, then the manifest (listing each object's sha256), its signature if a signing key is
configured, then the `latest` marker. A run that dies midway therefore never moves `latest`,
and readers verify the manifest's signature (with a key) and every object against the
manifest before unpickling it. Keys: taxi/layout.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import platform
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from taxi.config import LOADABLE_MODEL_FORMATS, MODEL_FORMATS
from taxi.layout import (
    LATEST_KEY,
    MANIFEST_OBJECT,
    METRICS_OBJECT,
    MODEL_OBJECT,
    MODELS_PREFIX,
    REFERENCE_OBJECT,
    SIGNATURE_OBJECT,
    VECTORIZER_OBJECT,
    model_key,
    model_prefix,
)
from taxi.storage.objects import BucketNotFoundError, IntegrityError, NotFoundError, ObjectStore, StorageError, sha256_hex

# What new_version_id makes: the only version ids a run parameter, latest.json or a listing
# may name (nothing like "../" can then reach a key).
VERSION_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
VERSION_ID_EXAMPLE = "20260101T120000Z-1a2b3c"
# An HMAC-SHA256, hex encoded.
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{64}")
# Conditional writes of latest.json lost in a row to other publishers before giving up on
# promoting (each loss means another version was just published).
LATEST_WRITE_ATTEMPTS = 5

SIGNATURE_ALGORITHM = "HMAC-SHA256"
# A shorter key is more likely a placeholder than a secret; refuse it rather than sign with it.
MIN_SIGNING_KEY_BYTES = 16
# A version without a manifest whose newest object is older than this is an abandoned
# training run, not one still writing (a run writes all its objects within seconds).
INCOMPLETE_VERSION_MAX_AGE = timedelta(hours=6)

_LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy", "scipy", "pandas", "pyarrow", "boto3")

# A manifest, a marker, metrics: JSON objects as stored.
Json = dict[str, Any]


class ModelNotFoundError(StorageError):
    """The requested model version (or any version at all) is not in the bucket."""


class UnsupportedModelError(StorageError):
    """A model version saved in a format this code cannot load; it has to be retrained."""


class InvalidVersionError(ValueError):
    """A model version id that new_version_id could not have made (bad input, never retried)."""


def is_version_id(version: object) -> bool:
    return isinstance(version, str) and VERSION_ID.fullmatch(version) is not None


def check_version_id(version: object, expected: str = "model_version must be 'latest' or a model version id") -> str:
    """`version` if it is a model version id; else an error saying what was `expected` (not
    the value, which may be anything a caller typed)."""
    if not is_version_id(version):
        raise InvalidVersionError(f"{expected} such as {VERSION_ID_EXAMPLE!r}")
    return str(version)


def check_model_format(version: str, manifest: Json) -> None:
    """Refuse, before unpickling, a version whose manifest records a model format this code
    cannot load (taxi.config.LOADABLE_MODEL_FORMATS; model types it does not list pass)."""
    model_type = manifest.get("model_type")
    loadable = LOADABLE_MODEL_FORMATS.get(model_type) if isinstance(model_type, str) else None
    saved = manifest.get("model_format")
    if loadable is None or saved in loadable:
        return
    saved_as = f"format {saved!r}" if isinstance(saved, str) else "a format from before model formats were recorded"
    raise UnsupportedModelError(
        f"model version {version!r} is a {model_type} model saved in {saved_as}, which this version of the code "
        f"cannot load (it reads {MODEL_FORMATS[model_type]!r}): retrain it with the training flow "
        f"(model_type={model_type!r}) and use the new version"
    )


def manifest_signature(key: bytes, manifest_body: bytes) -> str:
    """HMAC-SHA256 of the manifest's exact bytes, hex encoded."""
    return hmac.new(key, manifest_body, hashlib.sha256).hexdigest()


def check_signing_key(key: bytes | None) -> bytes | None:
    """The key as given, or an error naming the problem (never the key itself)."""
    if key is not None and len(key) < MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"the model signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes long")
    return key


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique version ids: UTC time of training plus a random suffix."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AnyChampion:
    """The type of ANY_CHAMPION: promote whatever `latest` names."""


ANY_CHAMPION = AnyChampion()


@dataclass
class LoadedModel:
    version: str
    model: Any  # whatever was pickled: storage knows nothing of model types
    vectorizer: Any
    manifest: Json
    # Reference statistics of the training trips (taxi.monitoring); None for versions
    # published before they were stored.
    reference: Json | None = None


@dataclass
class ModelRegistry:
    """The model versions stored in one bucket.

    With a `signing_key`, manifests are signed when saved and models whose manifest is not
    signed with that key are refused when loaded. The key is kept out of the repr so that
    logging a registry never prints it."""

    objects: ObjectStore
    signing_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_signing_key(self.signing_key)

    def save_model(
        self,
        model: object,
        vectorizer: object,
        *,
        metrics: Json,
        details: Json,
        promote: bool = True,
        version: str | None = None,
        attachments: dict[str, tuple[bytes, str]] | None = None,
        champion: str | None | AnyChampion = ANY_CHAMPION,
    ) -> Json:
        """Store a new model version and, if `promote`, point `latest` at it (see `promote`;
        `champion` is the version this one was compared with).

        `model` and `vectorizer` are pickled. `details` is recorded as is (data URIs, row counts, model type,
        promotion decision); `attachments` are further objects of the version, by name, as
        (bytes, content type), e.g. an evaluation plot. Returns the manifest as stored, except
        `promoted`: the stored manifest records the decision to promote, the returned one
        whether `latest` now names this version (False when another publisher moved `latest`
        away from `champion` meanwhile).
        """
        version = check_version_id(version, "version must be a model version id") if version is not None else new_version_id()
        bodies = {
            MODEL_OBJECT: (pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), "application/octet-stream"),
            VECTORIZER_OBJECT: (pickle.dumps(vectorizer, protocol=pickle.HIGHEST_PROTOCOL), "application/octet-stream"),
            METRICS_OBJECT: (json.dumps(metrics, indent=2).encode(), "application/json"),
            **(attachments or {}),
        }
        objects = {}
        for name, (body, content_type) in bodies.items():
            key = model_key(version, name)
            objects[name] = {"key": key, "sha256": self.objects.put_verified(key, body, content_type), "bytes": len(body)}

        manifest = {
            "version": version,
            "created_at": _now(),
            **details,
            "metrics": metrics,
            "promoted": promote,
            "library_versions": library_versions(),
            "objects": objects,
        }
        manifest_body = json.dumps(manifest, indent=2, sort_keys=False).encode()
        manifest_sha = self.objects.put_verified(model_key(version, MANIFEST_OBJECT), manifest_body, "application/json")
        if self.signing_key is not None:
            # Signed before `latest` moves, so a reader with the key never finds latest
            # pointing at a manifest without its signature.
            signature = {"algorithm": SIGNATURE_ALGORITHM, "signature": manifest_signature(self.signing_key, manifest_body)}
            body = json.dumps(signature, indent=2).encode()
            self.objects.put_verified(model_key(version, SIGNATURE_OBJECT), body, "application/json")
        promoted = promote and self.promote(version, manifest_sha, champion)
        return {**manifest, "promoted": promoted}

    def verify_signature(self, version: str, manifest_body: bytes) -> None:
        """Refuse a manifest that is not signed with this registry's key (no-op without a key)."""
        if self.signing_key is None:
            return
        key = model_key(version, SIGNATURE_OBJECT)
        uri = self.objects.uri(key)
        try:
            body = self.objects.get(key)
        except NotFoundError as error:
            raise IntegrityError(
                f"model version {version!r} is not signed ({uri} does not exist) and a signing key "
                "is configured: refusing to load it"
            ) from error
        # Whatever the file holds (not JSON, not UTF-8, other types, non-ASCII text) is an
        # integrity failure, and its content is never echoed.
        try:
            recorded = json.loads(body)
        except ValueError as error:
            raise IntegrityError(f"{uri} is not a signature file: refusing to load model version {version!r}") from error
        signature = recorded.get("signature") if isinstance(recorded, dict) else None
        if not isinstance(signature, str) or _SIGNATURE_HEX.fullmatch(signature) is None:
            raise IntegrityError(f"{uri} is not a signature file: refusing to load model version {version!r}")
        if recorded.get("algorithm") != SIGNATURE_ALGORITHM:
            raise IntegrityError(f"{uri} does not use {SIGNATURE_ALGORITHM}: refusing to load model version {version!r}")
        if not hmac.compare_digest(signature.encode(), manifest_signature(self.signing_key, manifest_body).encode()):
            raise IntegrityError(
                f"the signature of model version {version!r} ({uri}) does not match the configured "
                "signing key: the manifest was altered or signed with another key; refusing to load it"
            )

    def incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        """Versions with objects but no manifest (a training run died while writing them),
        whose newest object is older than `older_than`: younger ones may still be being
        written by a running training. The version `latest` names is never listed."""
        newest: dict[str, datetime] = {}
        has_manifest: set[str] = set()
        for item in self.objects.list_objects(MODELS_PREFIX):
            version, _, name = item["Key"][len(MODELS_PREFIX) :].partition("/")
            if not name or not is_version_id(version):  # models/latest.json, or not ours to judge
                continue
            newest[version] = max(newest.get(version, item["LastModified"]), item["LastModified"])
            if name == MANIFEST_OBJECT:
                has_manifest.add(version)
        marker = self.latest_marker()
        current = marker["version"] if marker else None
        cutoff = datetime.now(UTC) - older_than
        return sorted(v for v, t in newest.items() if v not in has_manifest and v != current and t <= cutoff)

    def delete_incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        """Delete what `incomplete_versions` lists; returns the versions deleted."""
        versions = self.incomplete_versions(older_than)
        for version in versions:
            for key in self.objects.list_keys(model_prefix(version)):
                self.objects.delete(key)
        return versions

    def set_latest(self, version: str, manifest_sha256: str) -> None:
        """Point `latest` at `version`, whatever it names now (an operator's rollback)."""
        if not self.promote(version, manifest_sha256, ANY_CHAMPION):
            raise StorageError(f"{self.objects.uri(LATEST_KEY)} kept changing: try again")

    def promote(self, version: str, manifest_sha256: str, champion: str | None | AnyChampion = ANY_CHAMPION) -> bool:
        """Point `latest` at `version` if it still names `champion`, the version this one was
        compared with (None: no version yet; ANY_CHAMPION: whatever it names). Returns
        whether `latest` now names `version`.

        A conditional write (If-Match on the ETag read, If-None-Match for the first marker):
        when another publisher changes `latest` between our read and our write, ours is
        refused, and we read it again and decide again. A version that was compared with a
        champion `latest` no longer names stays stored, not promoted: it never replaces a
        model it was not compared with."""
        check_version_id(version, "version must be a model version id")
        marker = json.dumps(
            {
                "version": version,
                "manifest": model_key(version, MANIFEST_OBJECT),
                "manifest_sha256": manifest_sha256,
                "updated_at": _now(),
            },
            indent=2,
        ).encode()
        for _ in range(LATEST_WRITE_ATTEMPTS):
            found = self.objects.get_with_etag(LATEST_KEY)
            etag = found[1] if found else None
            try:
                current = self._parse_marker(found[0])["version"] if found else None
            except IntegrityError:
                if champion is not ANY_CHAMPION:
                    return False  # broken since we compared: leave it to a person
                current = None  # an unreadable marker names nothing to keep
            if current == version:
                return True
            if champion is not ANY_CHAMPION and current != champion:
                return False
            if self.objects.put_if_unchanged(LATEST_KEY, marker, etag):
                return True
        return False

    def _parse_marker(self, body: bytes) -> Json:
        """latest.json's content, checked; IntegrityError (never its content) if malformed."""
        uri = self.objects.uri(LATEST_KEY)
        try:
            marker = json.loads(body)
        except ValueError as error:
            raise IntegrityError(f"{uri} is not a model marker (not JSON): refusing it") from error
        if not isinstance(marker, dict) or not is_version_id(marker.get("version")):
            raise IntegrityError(f"{uri} does not name a valid model version id: refusing it")
        if not isinstance(marker.get("manifest_sha256"), str | None):
            raise IntegrityError(f"{uri} has a malformed manifest_sha256: refusing it")
        return marker

    def latest_marker(self) -> Json | None:
        """latest.json's content (checked), or None while no version has been published."""
        found = self.objects.get_with_etag(LATEST_KEY)
        return self._parse_marker(found[0]) if found else None

    def resolve_version(self, version: str = "latest") -> tuple[str, str | None]:
        """The concrete version id for `version`, and the manifest checksum the marker vouches for."""
        if version != "latest":
            return check_version_id(version), None
        marker = self.latest_marker()
        if marker is None:
            raise ModelNotFoundError(
                f"no model has been published to {self.objects.uri(LATEST_KEY)} yet: run the training flow first"
            )
        return marker["version"], marker.get("manifest_sha256")

    def load_manifest(self, version: str, expected_sha256: str | None = None) -> Json:
        """The manifest of `version`, verified: against `expected_sha256` (latest.json's) if
        given, against its signature with a key, and against where it was loaded from: a
        manifest names its own version and that version's object keys (both signed), so a
        manifest copied under another version id is refused."""
        check_version_id(version)
        key = model_key(version, MANIFEST_OBJECT)
        uri = self.objects.uri(key)
        try:
            body = self.objects.get(key)  # one request: reading is how we find out it exists
        except BucketNotFoundError:
            raise
        except NotFoundError as error:
            raise ModelNotFoundError(
                f"model version {version!r} not found: {uri} does not exist (a version without a manifest was never completed)"
            ) from error
        if expected_sha256 is not None and sha256_hex(body) != expected_sha256:
            raise IntegrityError(f"{uri} does not match the checksum recorded in {self.objects.uri(LATEST_KEY)}")
        self.verify_signature(version, body)
        try:
            manifest = json.loads(body)
        except ValueError as error:
            raise IntegrityError(f"{uri} is not a manifest (not JSON): refusing to load model version {version!r}") from error
        if not isinstance(manifest, dict) or manifest.get("version") != version:
            raise IntegrityError(f"{uri} is the manifest of another model version: refusing to load it as {version!r}")
        objects = manifest.get("objects")
        if not isinstance(objects, dict) or not all(
            isinstance(entry, dict) and entry.get("key") == model_key(version, name) and isinstance(entry.get("sha256"), str)
            for name, entry in objects.items()
        ):
            raise IntegrityError(f"{uri} lists objects outside model version {version!r}: refusing to load it")
        return manifest

    def load_model(self, version: str = "latest") -> LoadedModel:
        """Load a model version, verifying every object against its manifest before unpickling."""
        concrete, manifest_sha = self.resolve_version(version)
        manifest = self.load_manifest(concrete, manifest_sha)
        check_model_format(concrete, manifest)  # before unpickling an object of a retired class
        model, vectorizer = (self._unpickle(concrete, manifest, name) for name in (MODEL_OBJECT, VECTORIZER_OBJECT))
        reference = (
            json.loads(self.verified_object(manifest, REFERENCE_OBJECT)) if REFERENCE_OBJECT in manifest["objects"] else None
        )
        return LoadedModel(concrete, model, vectorizer, manifest, reference)

    def _unpickle(self, version: str, manifest: Json, name: str) -> Any:
        body = self.verified_object(manifest, name)
        try:
            return pickle.loads(body)
        except Exception as error:
            # Verified bytes that do not load are a format this code cannot read: the same
            # every time, so not worth retrying.
            raise UnsupportedModelError(
                f"{self.objects.uri(model_key(version, name))} of model version {version!r} cannot be unpickled by "
                f"this version of the code ({type(error).__name__}): retrain it with the training flow"
            ) from error

    def verified_object(self, manifest: Json, name: str) -> bytes:
        """The bytes of object `name` of a (verified) manifest's version, refused unless
        they match the sha256 the manifest lists; unpickle or parse only after this."""
        entry = manifest["objects"][name]
        body = self.objects.get(entry["key"])
        if sha256_hex(body) != entry["sha256"]:
            raise IntegrityError(
                f"{self.objects.uri(entry['key'])} does not match the sha256 in its manifest: refusing to load it"
            )
        return body
