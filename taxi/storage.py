"""The S3 artifact store: model versions, their manifest, the `latest` marker, predictions.

Bucket layout (see the README):

    models/<version>/model.pkl          fitted model
    models/<version>/vectorizer.pkl     fitted vectorizer
    models/<version>/metrics.json       evaluation figures
    models/<version>/evaluation.png     predicted vs actual, error by hour
    models/<version>/manifest.json      written last: a version without it is incomplete
    models/latest.json                  marker naming the current version
    predictions/<input name>/<version>.parquet

A version is published in this order: every object written and read back with a matching
sha256, then the manifest (listing each object's sha256), then the `latest` marker. A run
that dies midway therefore never moves `latest`, and readers verify every object against
the manifest before unpickling it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import platform
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import ClientError

from taxi.config import StoreConfig

MODEL_OBJECT = "model.pkl"
VECTORIZER_OBJECT = "vectorizer.pkl"
METRICS_OBJECT = "metrics.json"
MANIFEST_OBJECT = "manifest.json"
LATEST_MARKER = "latest.json"

_LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "boto3")


class StorageError(RuntimeError):
    """An S3 operation failed; the message names the bucket and key."""


class ModelNotFoundError(StorageError):
    """The requested model version (or any version at all) is not in the bucket."""


class IntegrityError(StorageError):
    """An object does not match the checksum recorded for it: it was altered or truncated."""


def s3_client() -> Any:
    """A boto3 S3 client configured from the standard AWS_* environment variables.

    Path-style addressing because MinIO and other self-hosted servers do not resolve
    bucket subdomains; bounded timeouts and retries so a dead endpoint fails the run in
    seconds rather than hanging it."""
    return boto3.client(
        "s3",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


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
    """Reads and writes this project's artifacts in one bucket."""

    config: StoreConfig = field(default_factory=StoreConfig.from_env)
    client: Any = field(default_factory=s3_client)

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

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if _error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check {self.uri(key)}: {error}") from error

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except ClientError as error:
            raise StorageError(f"cannot list {self.uri(prefix)}: {error}") from error
        return keys

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
        if promote:
            self.set_latest(version, manifest_sha)
        return manifest

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
        return json.loads(body)

    def load_model(self, version: str = "latest") -> LoadedModel:
        """Load a model version, verifying every object against its manifest before unpickling."""
        concrete, manifest_sha = self.resolve_version(version)
        manifest = self.load_manifest(concrete, manifest_sha)
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

    def predictions_key(self, source: str, version: str) -> str:
        return f"{self.config.predictions_prefix}/{source_name(source)}/{version}.parquet"

    def write_predictions(self, predictions: pd.DataFrame, source: str, version: str) -> str:
        """Store predictions as one parquet object; returns its s3:// URI."""
        buffer = io.BytesIO()
        table = pa.Table.from_pandas(predictions, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"taxi.model_version": version.encode(), b"taxi.source": source.encode()}
        )
        pq.write_table(table, buffer)
        key = self.predictions_key(source, version)
        self.put(key, buffer.getvalue())
        return self.uri(key)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
