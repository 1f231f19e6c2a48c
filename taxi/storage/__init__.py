"""The S3 artifact store, in three parts:

- `objects`: plain objects in a bucket (get, put-verified, list, delete, and the conditional
  writes: put-if-absent, replace- and delete-if-unchanged) and the project's storage errors;
- `registry`: model versions on top of it (manifest, checksums, signing, `latest`);
- `predictions`: writing predictions.

Keys and URIs are formatted by taxi.layout, without a client.
"""

from taxi.layout import (
    LATEST_MARKER,
    MANIFEST_OBJECT,
    METRICS_OBJECT,
    MODEL_OBJECT,
    SIGNATURE_OBJECT,
    VECTORIZER_OBJECT,
    parse_s3_uri,
    source_name,
)
from taxi.storage.artifacts import ArtifactStore, StoreConfig
from taxi.storage.objects import (
    AlreadyExistsError,
    BucketNotFoundError,
    IntegrityError,
    NotFoundError,
    ObjectStore,
    StorageError,
    TransientStorageError,
    s3_client,
    sha256_hex,
)
from taxi.storage.predictions import write_predictions
from taxi.storage.registry import (
    ANY_CHAMPION,
    INCOMPLETE_VERSION_MAX_AGE,
    MIN_SIGNING_KEY_BYTES,
    SIGNATURE_ALGORITHM,
    InvalidVersionError,
    LoadedModel,
    ModelNotFoundError,
    ModelRegistry,
    UnsupportedModelError,
    check_model_format,
    check_signing_key,
    check_version_id,
    library_versions,
    manifest_signature,
    new_version_id,
)

__all__ = [
    "ANY_CHAMPION",
    "INCOMPLETE_VERSION_MAX_AGE",
    "LATEST_MARKER",
    "MANIFEST_OBJECT",
    "METRICS_OBJECT",
    "MIN_SIGNING_KEY_BYTES",
    "MODEL_OBJECT",
    "SIGNATURE_ALGORITHM",
    "SIGNATURE_OBJECT",
    "VECTORIZER_OBJECT",
    "AlreadyExistsError",
    "ArtifactStore",
    "BucketNotFoundError",
    "IntegrityError",
    "InvalidVersionError",
    "LoadedModel",
    "ModelNotFoundError",
    "ModelRegistry",
    "NotFoundError",
    "ObjectStore",
    "StorageError",
    "StoreConfig",
    "TransientStorageError",
    "UnsupportedModelError",
    "check_model_format",
    "check_signing_key",
    "check_version_id",
    "library_versions",
    "manifest_signature",
    "new_version_id",
    "parse_s3_uri",
    "s3_client",
    "sha256_hex",
    "source_name",
    "write_predictions",
]
