"""The S3 artifact store: model versions, their manifest, the `latest` marker, predictions.

Bucket layout (see the README):

    models/<version>/model.pkl          fitted model
    models/<version>/vectorizer.pkl     fitted vectorizer
    models/<version>/metrics.json       evaluation figures
    models/<version>/evaluation.png     predicted vs actual, error by hour
    models/<version>/manifest.json      written last: a version without it is incomplete
    models/<version>/manifest.json.sig  HMAC-SHA256 of the manifest's bytes (with a signing key)
    models/latest.json                  marker naming the current version
    predictions/<input name>/<version>.parquet

A version is published in this order: every object written and read back with a matching
sha256, then the manifest (listing each object's sha256), its signature if a signing key is
configured, then the `latest` marker. A run that dies midway therefore never moves `latest`,
and readers verify the manifest's signature (with a key) and every object against the
manifest before unpickling it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import platform
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taxi.config import StoreConfig

MODEL_OBJECT = "model.pkl"
VECTORIZER_OBJECT = "vectorizer.pkl"
METRICS_OBJECT = "metrics.json"
MANIFEST_OBJECT = "manifest.json"
SIGNATURE_OBJECT = "manifest.json.sig"
LATEST_MARKER = "latest.json"
SIGNATURE_ALGORITHM = "HMAC-SHA256"
# A shorter key is more likely a placeholder than a secret; refuse it rather than sign with it.
MIN_SIGNING_KEY_BYTES = 16
# A version without a manifest whose newest object is older than this is an abandoned
# training run, not one still writing (a run writes all its objects within seconds).
INCOMPLETE_VERSION_MAX_AGE = timedelta(hours=6)

_LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy", "scipy", "pandas", "pyarrow", "boto3")


class StorageError(RuntimeError):
    """An S3 operation failed; the message names the bucket and key."""


class ModelNotFoundError(StorageError):
    """The requested model version (or any version at all) is not in the bucket."""


class IntegrityError(StorageError):
    """An object does not match the checksum recorded for it: it was altered or truncated."""


class UnsupportedModelError(StorageError):
    """A model version saved in a format this code cannot load; it has to be retrained."""


# Bounds on one S3 call: at most S3_MAX_ATTEMPTS tries (botocore's "standard" retry mode
# backs off up to 2**n seconds between them), each waiting at most S3_CONNECT_TIMEOUT for a
# connection and S3_READ_TIMEOUT for each socket read. A dead endpoint thus fails a call in
# at most about 3 * 5 + 1 + 2 = 18 s; the flows' task retries multiply that (see flows/tasks.py
# and the README's "Reliability and security" section for the whole-run figure).
S3_MAX_ATTEMPTS = 3
S3_CONNECT_TIMEOUT = 5
S3_READ_TIMEOUT = 30


def s3_client() -> Any:
    """A boto3 S3 client configured from the standard AWS_* environment variables.

    Path-style addressing because MinIO and other self-hosted servers do not resolve
    bucket subdomains; bounded timeouts and retries so a dead endpoint fails the run in
    seconds rather than hanging it."""
    return boto3.client(
        "s3",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
            connect_timeout=S3_CONNECT_TIMEOUT,
            read_timeout=S3_READ_TIMEOUT,
        ),
    )


def manifest_signature(key: bytes, manifest_body: bytes) -> str:
    """HMAC-SHA256 of the manifest's exact bytes, hex encoded."""
    return hmac.new(key, manifest_body, hashlib.sha256).hexdigest()


def check_signing_key(key: bytes | None) -> bytes | None:
    """The key as given, or an error naming the problem (never the key itself)."""
    if key is not None and len(key) < MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"the model signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes long")
    return key


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') from 's3://bucket/key'."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an S3 URI needs a bucket and a key, got {uri!r}")
    return bucket, key


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, unique version ids: UTC time of training plus a random suffix."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def source_name(source: str) -> str:
    """A short, key-safe name for an input: its file name without extension."""
    name = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    for suffix in (".parquet", ".pq", ".csv.gz", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name or "input"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class LoadedModel:
    version: str
    model: Any
    vectorizer: Any
    manifest: dict[str, Any]


@dataclass
class ArtifactStore:
    """Reads and writes this project's artifacts in one bucket.

    With a `signing_key`, manifests are signed when saved and models whose manifest is not
    signed with that key are refused when loaded. The key is kept out of the repr so that
    logging a store never prints it."""

    config: StoreConfig = field(default_factory=StoreConfig.from_env)
    client: Any = field(default_factory=s3_client)
    signing_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_signing_key(self.signing_key)

    @property
    def bucket(self) -> str:
        return self.config.bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # --- plain objects -------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (idempotent)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if _error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"cannot access bucket {self.bucket!r}: {error}") from error
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageError(f"cannot create bucket {self.bucket!r}: {error}") from error

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write one object and return its sha256."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except ClientError as error:
            raise StorageError(f"cannot write {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("write", key, error) from error
        return sha256_hex(body)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _error_code(error) in ("NoSuchKey", "404"):
                raise StorageError(f"{self.uri(key)} does not exist") from error
            if _error_code(error) == "NoSuchBucket":
                raise StorageError(f"bucket {self.bucket!r} does not exist (reading {key})") from error
            raise StorageError(f"cannot read {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("read", key, error) from error

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if _error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("check", key, error) from error

    def _unreachable(self, action: str, key: str, error: BotoCoreError) -> StorageError:
        """Connection-level failures (refused, timed out, cut off) after botocore's own
        retries: name the endpoint so the run's error says where S3 was expected."""
        return StorageError(f"cannot {action} {self.uri(key)}: S3 endpoint {self.client.meta.endpoint_url} unreachable ({error})")

    def list_objects(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under `prefix` as S3 reports it (Key, Size, ETag, LastModified)."""
        objects: list[dict[str, Any]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                objects.extend(page.get("Contents", []))
        except ClientError as error:
            raise StorageError(f"cannot list {self.uri(prefix)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("list", prefix, error) from error
        return objects

    def list_keys(self, prefix: str) -> list[str]:
        return [item["Key"] for item in self.list_objects(prefix)]

    def delete(self, key: str) -> None:
        """Delete one object; deleting an absent object is not an error in S3."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            raise StorageError(f"cannot delete {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("delete", key, error) from error

    def put_if_absent(self, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Create an object only if no object has that key (S3 conditional write,
        If-None-Match: *). Returns False when it already exists: of two writers racing for
        the same key exactly one wins, which is what a claim on a piece of work needs."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
        except ClientError as error:
            # 412 when the object exists; 409 when another conditional write to it is in flight.
            if _error_code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise StorageError(f"cannot create {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise self._unreachable("create", key, error) from error
        return True

    def put_verified(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write an object, read it back, and fail unless the bytes stored are the bytes sent."""
        expected = self.put(key, body, content_type)
        stored = sha256_hex(self.get(key))
        if stored != expected:
            raise IntegrityError(f"{self.uri(key)} read back with sha256 {stored}, wrote {expected}")
        return expected

    # --- model versions ------------------------------------------------------------------

    def model_key(self, version: str, name: str) -> str:
        return f"{self.config.models_prefix}/{version}/{name}"

    def manifest_uri(self, version: str) -> str:
        return self.uri(self.model_key(version, MANIFEST_OBJECT))

    @property
    def latest_key(self) -> str:
        return f"{self.config.models_prefix}/{LATEST_MARKER}"

    def save_model(
        self,
        model: Any,
        vectorizer: Any,
        *,
        metrics: dict[str, Any],
        details: dict[str, Any],
        promote: bool = True,
        version: str | None = None,
        attachments: dict[str, tuple[bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """Store a new model version and, if `promote`, point `latest` at it.

        Returns the manifest. `details` is recorded as is (data URIs, row counts, model type,
        promotion decision); `attachments` are further objects of the version, by name, as
        (bytes, content type), e.g. an evaluation plot.
        """
        version = version or new_version_id()
        bodies = {
            MODEL_OBJECT: (pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), "application/octet-stream"),
            VECTORIZER_OBJECT: (pickle.dumps(vectorizer, protocol=pickle.HIGHEST_PROTOCOL), "application/octet-stream"),
            METRICS_OBJECT: (json.dumps(metrics, indent=2).encode(), "application/json"),
            **(attachments or {}),
        }
        objects = {}
        for name, (body, content_type) in bodies.items():
            key = self.model_key(version, name)
            objects[name] = {"key": key, "sha256": self.put_verified(key, body, content_type), "bytes": len(body)}

        manifest = {
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **details,
            "metrics": metrics,
            "promoted": promote,
            "library_versions": library_versions(),
            "objects": objects,
        }
        manifest_body = json.dumps(manifest, indent=2, sort_keys=False).encode()
        manifest_sha = self.put_verified(self.model_key(version, MANIFEST_OBJECT), manifest_body, "application/json")
        if self.signing_key is not None:
            # Signed before `latest` moves, so a reader with the key never finds latest
            # pointing at a manifest without its signature.
            self.put_verified(self.model_key(version, SIGNATURE_OBJECT), self._signature_body(manifest_body), "application/json")
        if promote:
            self.set_latest(version, manifest_sha)
        return manifest

    def _signature_body(self, manifest_body: bytes) -> bytes:
        assert self.signing_key is not None
        signature = {"algorithm": SIGNATURE_ALGORITHM, "signature": manifest_signature(self.signing_key, manifest_body)}
        return json.dumps(signature, indent=2).encode()

    def verify_signature(self, version: str, manifest_body: bytes) -> None:
        """Refuse a manifest that is not signed with this store's key (no-op without a key)."""
        if self.signing_key is None:
            return
        key = self.model_key(version, SIGNATURE_OBJECT)
        if not self.exists(key):
            raise IntegrityError(
                f"model version {version!r} is not signed ({self.uri(key)} does not exist) and a signing key "
                "is configured: refusing to load it"
            )
        try:
            recorded = json.loads(self.get(key))
            signature = str(recorded["signature"])
            algorithm = recorded.get("algorithm")
        except (ValueError, KeyError, TypeError) as error:
            raise IntegrityError(f"{self.uri(key)} is not a signature file: refusing to load model version {version!r}") from error
        if algorithm != SIGNATURE_ALGORITHM:
            raise IntegrityError(f"{self.uri(key)} uses {algorithm!r}, expected {SIGNATURE_ALGORITHM}: refusing to load it")
        if not hmac.compare_digest(signature, manifest_signature(self.signing_key, manifest_body)):
            raise IntegrityError(
                f"the signature of model version {version!r} ({self.uri(key)}) does not match the configured "
                "signing key: the manifest was altered or signed with another key; refusing to load it"
            )

    def incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        """Versions with objects but no manifest (a training run died while writing them),
        whose newest object is older than `older_than`: younger ones may still be being
        written by a running training. The version `latest` names is never listed."""
        prefix = f"{self.config.models_prefix}/"
        newest: dict[str, datetime] = {}
        has_manifest: set[str] = set()
        for item in self.list_objects(prefix):
            version, _, name = item["Key"][len(prefix) :].partition("/")
            if not name:  # models/latest.json itself
                continue
            newest[version] = max(newest.get(version, item["LastModified"]), item["LastModified"])
            if name == MANIFEST_OBJECT:
                has_manifest.add(version)
        marker = self.latest_marker()
        current = marker["version"] if marker else None
        cutoff = datetime.now(timezone.utc) - older_than
        return sorted(v for v, t in newest.items() if v not in has_manifest and v != current and t <= cutoff)

    def delete_incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        """Delete what `incomplete_versions` lists; returns the versions deleted."""
        versions = self.incomplete_versions(older_than)
        for version in versions:
            for key in self.list_keys(f"{self.config.models_prefix}/{version}/"):
                self.delete(key)
        return versions

    def set_latest(self, version: str, manifest_sha256: str) -> None:
        marker = {
            "version": version,
            "manifest": self.model_key(version, MANIFEST_OBJECT),
            "manifest_sha256": manifest_sha256,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.put_verified(self.latest_key, json.dumps(marker, indent=2).encode(), "application/json")

    def latest_marker(self) -> dict[str, Any] | None:
        if not self.exists(self.latest_key):
            return None
        return json.loads(self.get(self.latest_key))

    def resolve_version(self, version: str = "latest") -> tuple[str, str | None]:
        """The concrete version id for `version`, and the manifest checksum the marker vouches for."""
        if version != "latest":
            return version, None
        marker = self.latest_marker()
        if marker is None:
            raise ModelNotFoundError(
                f"no model has been published to {self.uri(self.latest_key)} yet: run the training flow first"
            )
        return marker["version"], marker.get("manifest_sha256")

    def load_manifest(self, version: str, expected_sha256: str | None = None) -> dict[str, Any]:
        key = self.model_key(version, MANIFEST_OBJECT)
        if not self.exists(key):
            raise ModelNotFoundError(
                f"model version {version!r} not found: {self.uri(key)} does not exist "
                "(a version without a manifest was never completed)"
            )
        body = self.get(key)
        if expected_sha256 is not None and sha256_hex(body) != expected_sha256:
            raise IntegrityError(f"{self.uri(key)} does not match the checksum recorded in {self.uri(self.latest_key)}")
        self.verify_signature(version, body)
        return json.loads(body)

    def load_model(self, version: str = "latest") -> LoadedModel:
        """Load a model version, verifying every object against its manifest before unpickling."""
        concrete, manifest_sha = self.resolve_version(version)
        manifest = self.load_manifest(concrete, manifest_sha)
        from taxi.gbm import check_model_format  # the model package's rule; imported late: it loads XGBoost

        try:
            check_model_format(concrete, manifest)  # before unpickling an object of a retired class
        except ValueError as error:
            raise UnsupportedModelError(str(error)) from error
        objects = {}
        for name in (MODEL_OBJECT, VECTORIZER_OBJECT):
            entry = manifest["objects"][name]
            body = self.get(entry["key"])
            if sha256_hex(body) != entry["sha256"]:
                raise IntegrityError(
                    f"{self.uri(entry['key'])} does not match the sha256 in its manifest: refusing to load it"
                )
            objects[name] = pickle.loads(body)  # only after the checksum matched
        return LoadedModel(concrete, objects[MODEL_OBJECT], objects[VECTORIZER_OBJECT], manifest)

    # --- predictions ---------------------------------------------------------------------

    def predictions_key(self, source: str, version: str, name: str | None = None) -> str:
        """predictions/<name>/<version>.parquet; `name` defaults to the input's file name."""
        return f"{self.config.predictions_prefix}/{name or source_name(source)}/{version}.parquet"

    def write_predictions(self, predictions: pd.DataFrame, source: str, version: str, name: str | None = None) -> str:
        """Store predictions as one parquet object; returns its s3:// URI."""
        buffer = io.BytesIO()
        table = pa.Table.from_pandas(predictions, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"taxi.model_version": version.encode(), b"taxi.source": source.encode()}
        )
        pq.write_table(table, buffer)
        key = self.predictions_key(source, version, name)
        self.put(key, buffer.getvalue())
        return self.uri(key)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
