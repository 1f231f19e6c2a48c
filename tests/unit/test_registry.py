"""What the model registry decides without a bucket: which versions a listing shows as
abandoned by a training run that died (taxi.storage.registry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taxi.storage.objects import ObjectInfo
from taxi.storage.registry import abandoned_versions

OLD, NEW, DONE = "20260101T000000Z-aaaaaa", "20260101T060000Z-bbbbbb", "20260101T000000Z-cccccc"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _item(key: str, minutes: int) -> ObjectInfo:
    written = T0 + timedelta(minutes=minutes)
    return {"Key": key, "LastModified": written, "ETag": '"e"', "Size": 1}


LISTING = [
    _item("models/latest.json", 0),
    _item(f"models/{OLD}/model.pkl", 0),
    _item(f"models/{OLD}/vectorizer.pkl", 1),
    _item(f"models/{NEW}/model.pkl", 360),
    _item(f"models/{DONE}/model.pkl", 0),
    _item(f"models/{DONE}/manifest.json", 1),
    _item("models/backup/model.pkl", 0),
    _item("models/2026-01-01/model.pkl", 0),
]


def test_versions_without_a_manifest_older_than_the_cutoff_are_abandoned():
    assert abandoned_versions(LISTING, None, T0 + timedelta(hours=7)) == [OLD, NEW]
    # The newest object counts: OLD's vectorizer was written a minute after its model.
    assert abandoned_versions(LISTING, None, T0) == []
    assert abandoned_versions(LISTING, None, T0 + timedelta(minutes=1)) == [OLD]


def test_the_version_latest_names_and_foreign_folders_are_never_listed():
    assert abandoned_versions(LISTING, OLD, T0 + timedelta(hours=7)) == [NEW]
    assert abandoned_versions([], None, T0) == []
