"""A data month's manifest (taxi.ingest writes it) and its signature: writing them, and
checking them before a training run reads the month.

With a signing key (the one models are signed with), ingestion writes
data/<color>/<file>.manifest.json.sig, an HMAC-SHA256 of the manifest's exact bytes, before the
manifest itself: a month is in the bucket only once its manifest is (taxi.ingest), so no
month is ever listed with a manifest whose signature is still to come. Without a key
(TAXI_ALLOW_UNSIGNED=1) manifests are written unsigned and their signatures never checked, as
with models: the sha256 is still checked, against a manifest anyone who can write the bucket
could rewrite.

A training run takes each window month's sha256 from its manifest (`load_data_manifest`) and
compares it with the sha256 of the bytes it read (taxi.window.WindowPlan.check_read). Every
refusal is a DataIntegrityError naming the month and the way back, never the content.
"""

from __future__ import annotations

import json
import re

from taxi.errors import DataIntegrityError
from taxi.layout import data_key, data_manifest_key, data_signature_key
from taxi.months import Month, month_name
from taxi.records import DataManifest
from taxi.storage.errors import NotFoundError
from taxi.storage.manifests import json_body, signature_body, signature_problem
from taxi.storage.objects import ObjectStore

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
JSON = "application/json"


def reingest(color: str, month: Month) -> str:
    """How to put a month back as ingestion stores it: a fresh copy from the TLC source."""
    name = month_name(month)
    return f"ingest it again (the taxi-ingest flow, color {color}, start and end {name})"


def write_data_manifest(
    store: ObjectStore, manifest: DataManifest, month: Month, signing_key: bytes | None
) -> None:
    """Store `manifest` (its signature first, with a key); the data file is already stored."""
    color = manifest["color"]
    body = json_body(manifest)
    if signing_key is not None:
        signature = signature_body(signing_key, body)
        store.put_verified(data_signature_key(color, month), signature, JSON)
    store.put_verified(data_manifest_key(color, month), body, JSON)


def delete_data_manifest(store: ObjectStore, color: str, month: Month) -> None:
    """Remove a month's manifest, then its signature: the month is out of the bucket first."""
    store.delete(data_manifest_key(color, month))
    store.delete(data_signature_key(color, month))


def load_data_manifest(
    store: ObjectStore, color: str, month: Month, signing_key: bytes | None
) -> DataManifest:
    """The data manifest of `color` `month`, verified: there, signed with `signing_key` (when
    given), and the manifest of this very month and key."""
    name, key = f"{color} {month_name(month)}", data_manifest_key(color, month)
    uri = store.uri(key)
    try:
        body = store.get(key)
    except NotFoundError:
        raise DataIntegrityError(
            f"{name} has no data manifest ({uri}): its data file was not stored by ingestion, "
            f"or its manifest was removed; refusing to train on it: {reingest(color, month)}"
        ) from None
    if signing_key is not None:
        _check_signature(store, color, month, body, signing_key)
    manifest = _parse(body)
    if manifest is None or (manifest["color"], manifest["month"], manifest["key"]) != (
        color,
        month_name(month),
        data_key(color, month),
    ):
        raise DataIntegrityError(
            f"{uri} is not the data manifest of {name}: refusing to train on the month: "
            f"{reingest(color, month)}"
        )
    return manifest


def _check_signature(
    store: ObjectStore, color: str, month: Month, body: bytes, signing_key: bytes
) -> None:
    name, key = f"{color} {month_name(month)}", data_signature_key(color, month)
    uri = store.uri(key)
    try:
        problem = signature_problem(store.get(key), body, signing_key)
    except NotFoundError:
        problem = "does not exist"
    if problem is not None:
        raise DataIntegrityError(
            f"the data manifest of {name} is not signed with the configured signing key "
            f"({uri} {problem}): written unsigned (by an earlier release, or under "
            f"TAXI_ALLOW_UNSIGNED), altered, or signed with another key; refusing to train on the "
            f"month: {reingest(color, month)}, which copies it again from the TLC source and "
            "signs its manifest"
        )


def _parse(body: bytes) -> DataManifest | None:
    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    fields = (manifest.get(name) for name in ("color", "month", "key", "sha256"))
    if not all(isinstance(value, str) for value in fields):
        return None
    if _SHA256_HEX.fullmatch(manifest["sha256"]) is None:
        return None
    return manifest  # type: ignore[return-value]


def is_trusted(store: ObjectStore, color: str, month: Month, signing_key: bytes | None) -> bool:
    """Whether a month in the bucket has a manifest a training run would accept."""
    try:
        load_data_manifest(store, color, month, signing_key)
    except DataIntegrityError:
        return False
    return True
