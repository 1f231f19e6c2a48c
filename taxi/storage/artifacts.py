"""`ArtifactStore`: the object store, the model registry and the predictions writer of one
bucket in a single object, as taxi 0.1 had them. Kept so that code written against it keeps
working; new code uses `ObjectStore`, `ModelRegistry` and `write_predictions` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd

from taxi.config import StoreConfig
from taxi.layout import LATEST_KEY, MANIFEST_OBJECT, model_key, predictions_key
from taxi.storage.objects import ObjectStore
from taxi.storage.predictions import write_predictions
from taxi.storage.registry import ANY_CHAMPION, INCOMPLETE_VERSION_MAX_AGE, AnyChampion, Json, LoadedModel, ModelRegistry


@dataclass
class ArtifactStore(ObjectStore):
    """An ObjectStore with the registry's and the predictions' operations on its bucket.

    `config` names the bucket (default: TAXI_BUCKET); the signing key is kept out of the repr."""

    config: StoreConfig | None = None
    signing_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.config is None:
            self.config = StoreConfig(bucket=self.bucket)
        else:
            self.bucket = self.config.bucket
        self.registry = ModelRegistry(self, self.signing_key)

    def model_key(self, version: str, name: str) -> str:
        return model_key(version, name)

    def manifest_uri(self, version: str) -> str:
        return self.uri(model_key(version, MANIFEST_OBJECT))

    @property
    def latest_key(self) -> str:
        return LATEST_KEY

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
        return self.registry.save_model(
            model, vectorizer, metrics=metrics, details=details, promote=promote, version=version, attachments=attachments,
            champion=champion,
        )  # fmt: skip

    def load_model(self, version: str = "latest") -> LoadedModel:
        return self.registry.load_model(version)

    def load_manifest(self, version: str, expected_sha256: str | None = None) -> Json:
        return self.registry.load_manifest(version, expected_sha256)

    def verify_signature(self, version: str, manifest_body: bytes) -> None:
        self.registry.verify_signature(version, manifest_body)

    def resolve_version(self, version: str = "latest") -> tuple[str, str | None]:
        return self.registry.resolve_version(version)

    def latest_marker(self) -> Json | None:
        return self.registry.latest_marker()

    def set_latest(self, version: str, manifest_sha256: str) -> None:
        self.registry.set_latest(version, manifest_sha256)

    def incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        return self.registry.incomplete_versions(older_than)

    def delete_incomplete_versions(self, older_than: timedelta = INCOMPLETE_VERSION_MAX_AGE) -> list[str]:
        return self.registry.delete_incomplete_versions(older_than)

    def predictions_key(self, source: str, version: str, name: str | None = None) -> str:
        return predictions_key(source, version, name)

    def write_predictions(self, predictions: pd.DataFrame, source: str, version: str, name: str | None = None) -> str:
        return write_predictions(self, predictions, source, version, name)
