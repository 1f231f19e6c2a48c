"""Model versions on top of the object store: publishing, loading and `latest`.

A version is published in this order: every object written and read back with a matching
sha256, then the manifest's signature if a signing key is configured, then the manifest
(listing each object's sha256), then the `latest` marker. A run that dies midway therefore never moves `latest`,
and readers verify the manifest's signature (with a key) and every object against the
manifest before unpickling it. What a manifest, a signature and the marker hold, and how each
is checked: taxi.storage.manifests. Keys: taxi/layout.py.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
from taxi.records import LatestMarker, Manifest, ManifestDetails, ReferenceStatistics
from taxi.storage.errors import BucketNotFoundError, IntegrityError, NotFoundError, StorageError
from taxi.storage.manifests import (
    UnsupportedModelError,
    check_manifest_checksum,
    check_model_format,
    check_object,
    check_signature,
    check_signing_key,
    check_version_id,
    is_version_id,
    json_body,
    marker_body,
    new_manifest,
    new_version_id,
    parse_manifest,
    parse_marker,
    signature_body,
)
from taxi.storage.objects import ObjectInfo, ObjectStore

# Conditional writes of latest.json lost in a row to other publishers before giving up on
# promoting (each loss means another version was just published).
LATEST_WRITE_ATTEMPTS = 5
# A version without a manifest whose newest object is older than this is an abandoned
# training run, not one still writing (a run writes all its objects within seconds).
INCOMPLETE_VERSION_MAX_AGE = timedelta(hours=6)
PICKLE = "application/octet-stream"
JSON = "application/json"


class ModelNotFoundError(StorageError):
    """The requested model version (or any version at all) is not in the bucket."""


class AnyChampion:
    """The type of ANY_CHAMPION: promote whatever `latest` names."""


ANY_CHAMPION = AnyChampion()


@dataclass
class LoadedModel:
    version: str
    model: Any  # whatever was pickled: storage knows nothing of model types
    vectorizer: Any
    manifest: Manifest
    # Reference statistics of the training trips (taxi.monitoring); None for versions
    # published before they were stored.
    reference: ReferenceStatistics | None = None


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
        metrics: dict[str, float],
        details: ManifestDetails,
        promote: bool = True,
        version: str | None = None,
        attachments: dict[str, tuple[bytes, str]] | None = None,
        champion: str | None | AnyChampion = ANY_CHAMPION,
    ) -> Manifest:
        """Store a new model version and, if `promote`, point `latest` at it (see `promote`;
        `champion` is the version this one was compared with).

        `model` and `vectorizer` are pickled. `details` is recorded as is (data URIs, row
        counts, model type, promotion decision); `attachments` are further objects of the
        version, by name, as (bytes, content type), e.g. an evaluation plot. Returns the
        manifest as stored, except `promoted`: the stored manifest records the decision to
        promote, the returned one whether `latest` now names this version (False when another
        publisher moved `latest` away from `champion` meanwhile).
        """
        if version is None:
            version = new_version_id()
        else:
            version = check_version_id(version, "version must be a model version id")
        bodies = {
            MODEL_OBJECT: (pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), PICKLE),
            VECTORIZER_OBJECT: (pickle.dumps(vectorizer, protocol=pickle.HIGHEST_PROTOCOL), PICKLE),
            METRICS_OBJECT: (json_body(metrics), JSON),
            **(attachments or {}),
        }
        objects = {}
        for name, (body, content_type) in bodies.items():
            key = model_key(version, name)
            sha256 = self.objects.put_verified(key, body, content_type)
            objects[name] = {"key": key, "sha256": sha256, "bytes": len(body)}

        manifest = new_manifest(version, details, metrics, promote, objects)
        manifest_body = json_body(manifest)
        if self.signing_key is not None:
            # The signature before the manifest: a version whose signature could not be
            # written has no manifest either, so it is incomplete and cleaned up like any
            # other, and a reader with the key never finds a manifest without its signature.
            signature = signature_body(self.signing_key, manifest_body)
            self.objects.put_verified(model_key(version, SIGNATURE_OBJECT), signature, JSON)
        manifest_key = model_key(version, MANIFEST_OBJECT)
        manifest_sha = self.objects.put_verified(manifest_key, manifest_body, JSON)
        promoted = promote and self.promote(version, manifest_sha, champion)
        return {**manifest, "promoted": promoted}

    def set_latest(self, version: str, manifest_sha256: str) -> None:
        """Point `latest` at `version`, whatever it names now (an operator's rollback)."""
        if not self.promote(version, manifest_sha256, ANY_CHAMPION):
            raise StorageError(f"{self.objects.uri(LATEST_KEY)} kept changing: try again")

    def promote(
        self,
        version: str,
        manifest_sha256: str,
        champion: str | None | AnyChampion = ANY_CHAMPION,
    ) -> bool:
        """Point `latest` at `version` if it still names `champion`, the version this one was
        compared with (None: no version yet; ANY_CHAMPION: whatever it names). Returns
        whether `latest` now names `version`.

        A conditional write (If-Match on the ETag read, If-None-Match for the first marker):
        when another publisher changes `latest` between our read and our write, ours is
        refused, and we read it again and decide again. A version that was compared with a
        champion `latest` no longer names stays stored, not promoted: it never replaces a
        model it was not compared with."""
        check_version_id(version, "version must be a model version id")
        marker = marker_body(version, manifest_sha256)
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

    def incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        """Versions with objects but no manifest (a training run died while writing them),
        whose newest object is older than `older_than`: younger ones may still be being
        written by a running training. The version `latest` names is never listed."""
        listing = self.objects.list_objects(MODELS_PREFIX)
        marker = self.latest_marker()
        current = marker["version"] if marker else None
        return abandoned_versions(listing, current, datetime.now(UTC) - older_than)

    def delete_incomplete_versions(
        self,
        older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE,
    ) -> list[str]:
        """Delete what `incomplete_versions` lists; returns the versions deleted."""
        versions = self.incomplete_versions(older_than)
        for version in versions:
            for key in self.objects.list_keys(model_prefix(version)):
                self.objects.delete(key)
        return versions

    def _parse_marker(self, body: bytes) -> LatestMarker:
        return parse_marker(body, self.objects.uri(LATEST_KEY))

    def latest_marker(self) -> LatestMarker | None:
        """latest.json's content (checked), or None while no version has been published."""
        found = self.objects.get_with_etag(LATEST_KEY)
        return self._parse_marker(found[0]) if found else None

    def resolve_version(self, version: str = "latest") -> tuple[str, str | None]:
        """The concrete version id for `version`, and the manifest checksum the marker
        vouches for."""
        if version != "latest":
            return check_version_id(version), None
        marker = self.latest_marker()
        if marker is None:
            nothing = f"no model has been published to {self.objects.uri(LATEST_KEY)} yet"
            raise ModelNotFoundError(f"{nothing}: run the training flow first")
        return marker["version"], marker.get("manifest_sha256")

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
                f"model version {version!r} is not signed ({uri} does not exist) and a signing "
                "key is configured: refusing to load it. To recover: retrain (the training flow "
                "publishes a version signed with the configured key)"
            ) from error
        check_signature(body, manifest_body, self.signing_key, version, uri)

    def load_manifest(self, version: str, expected_sha256: str | None = None) -> Manifest:
        """The manifest of `version`, verified: against `expected_sha256` (latest.json's) if
        given, against its signature with a key, and against where it was loaded from
        (taxi.storage.manifests.parse_manifest)."""
        check_version_id(version)
        key = model_key(version, MANIFEST_OBJECT)
        uri = self.objects.uri(key)
        try:
            body = self.objects.get(key)  # one request: reading is how we find out it exists
        except BucketNotFoundError:
            raise
        except NotFoundError as error:
            missing = f"model version {version!r} not found: {uri} does not exist"
            why = "a version without a manifest was never completed"
            raise ModelNotFoundError(f"{missing} ({why})") from error
        check_manifest_checksum(body, expected_sha256, uri, self.objects.uri(LATEST_KEY))
        self.verify_signature(version, body)
        return parse_manifest(body, version, uri)

    def load_model(self, version: str = "latest") -> LoadedModel:
        """Load a model version, verifying every object against its manifest before
        unpickling."""
        concrete, manifest_sha = self.resolve_version(version)
        manifest = self.load_manifest(concrete, manifest_sha)
        check_model_format(concrete, manifest)  # before unpickling an object of a retired class
        model = self._unpickle(concrete, manifest, MODEL_OBJECT)
        vectorizer = self._unpickle(concrete, manifest, VECTORIZER_OBJECT)
        reference = None
        if REFERENCE_OBJECT in manifest["objects"]:
            reference = json.loads(self.verified_object(manifest, REFERENCE_OBJECT))
        return LoadedModel(concrete, model, vectorizer, manifest, reference)

    def _unpickle(self, version: str, manifest: Manifest, name: str) -> Any:
        body = self.verified_object(manifest, name)
        return unpickle(body, self.objects.uri(model_key(version, name)), version)

    def verified_object(self, manifest: Manifest, name: str) -> bytes:
        """The bytes of object `name` of a (verified) manifest's version, refused unless
        they match the sha256 the manifest lists; unpickle or parse only after this."""
        entry = manifest["objects"][name]
        return check_object(self.objects.get(entry["key"]), entry, self.objects.uri(entry["key"]))


def abandoned_versions(
    listing: list[ObjectInfo],
    current: str | None,
    cutoff: datetime,
) -> list[str]:
    """The versions of a listing of models/ that have objects but no manifest, whose newest
    object was written at or before `cutoff`, other than `current` (the one `latest` names).
    Keys that are not in a version folder (models/latest.json, models/backup/...) are not
    ours to judge."""
    newest: dict[str, datetime] = {}
    has_manifest: set[str] = set()
    for item in listing:
        version, _, name = item["Key"][len(MODELS_PREFIX) :].partition("/")
        if not name or not is_version_id(version):
            continue
        newest[version] = max(newest.get(version, item["LastModified"]), item["LastModified"])
        if name == MANIFEST_OBJECT:
            has_manifest.add(version)
    abandoned = {v for v, t in newest.items() if v not in has_manifest and t <= cutoff}
    return sorted(abandoned - {current})


def unpickle(body: bytes, uri: str, version: str) -> Any:
    """A verified object of model version `version`, read from `uri`, unpickled."""
    try:
        return pickle.loads(body)
    except Exception as error:
        # Verified bytes that do not load are a format this code cannot read: the same
        # every time, so not worth retrying.
        raise UnsupportedModelError(
            f"{uri} of model version {version!r} cannot be unpickled by this version of "
            f"the code ({type(error).__name__}): retrain it with the training flow"
        ) from error
