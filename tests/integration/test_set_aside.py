"""Setting aside a file that keeps failing, against the real S3 server: a copy the server makes,
a delete only of the object that was copied, a key of its own for every set-aside. The uploads
made "meanwhile" are real uploads, made from botocore's hooks at the moment in question."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from taxi.failed_files import SetAside, new_set_aside_id, record_failure, set_aside
from taxi.incoming import IncomingFile, list_incoming
from taxi.storage.copies import SourceChangedError, copy_unchanged
from taxi.storage.errors import AlreadyExistsError
from taxi.storage.objects import ObjectStore
from tests.integration.faults.s3_faults import header_ignored, s3_hook

MiB = 1024 * 1024
KEY = "incoming/bad.parquet"
BAD = b"PAR1 this upload was cut off"
GOOD = b"PAR1 the corrected upload"


def _listed(store: ObjectStore, key: str = KEY) -> IncomingFile:
    return next(f for f in list_incoming(store, "incoming/") if f.key == key)


@contextmanager
def _requests(store: ObjectStore) -> Iterator[Counter]:
    """The S3 operations `store`'s client sends while the block runs, counted by name."""
    sent: Counter = Counter()

    def count(event_name: str, **_: Any) -> None:
        sent[event_name.rsplit(".", 1)[-1]] += 1

    with s3_hook("before-send.s3", count, store.client.meta.events):
        yield sent


def _upload_when(store: ObjectStore, event: str, body: bytes):
    """A hook on `store`'s client that, at the first `event`, uploads `body` to KEY with another
    client: a person's corrected upload landing at that very moment."""
    other, uploaded = ObjectStore(bucket=store.bucket), []

    def upload(**_: Any) -> None:
        if not uploaded:
            other.put(KEY, body)
            uploaded.append(KEY)

    return s3_hook(event, upload, store.client.meta.events)


def test_a_file_is_copied_by_the_server_and_each_set_aside_keeps_its_own_key(store):
    store.put(KEY, BAD)
    store.put("failures/incoming/bad.parquet.json", b'{"failures": 3}')
    first_id = new_set_aside_id()
    with _requests(store) as sent:
        moved = set_aside(store, _listed(store), first_id)
    assert moved == SetAside(f"failed/{first_id}/{KEY}", original_kept=False)
    # The bytes went from object to object inside the server, never through this process.
    assert sent["CopyObject"] == 1 and sent["GetObject"] == sent["PutObject"] == 0
    assert store.get(moved.key) == BAD and not store.exists(KEY)
    assert not store.exists("failures/incoming/bad.parquet.json")

    # The same key fails again later (another upload): a second set-aside, the first one kept.
    store.put(KEY, b"PAR1 broken again")
    again = set_aside(store, _listed(store), new_set_aside_id())
    assert again.key != moved.key and again.key.endswith(f"/{KEY}")
    assert store.get(moved.key) == BAD and store.get(again.key) == b"PAR1 broken again"
    # Two set-asides within one second still get two keys.
    now = datetime.now(UTC)
    assert new_set_aside_id(now) != new_set_aside_id(now)


def test_a_retried_set_aside_finds_its_own_copy_and_an_existing_key_is_never_overwritten(store):
    store.put(KEY, BAD)
    file, set_aside_id = _listed(store), new_set_aside_id()
    target = f"failed/{set_aside_id}/{KEY}"
    store.put(target, BAD)  # as left by a try that copied, then lost its connection
    assert set_aside(store, file, set_aside_id) == SetAside(target, original_kept=False)
    assert store.get(target) == BAD and not store.exists(KEY)
    # A copy onto a key that exists is refused by the server (If-None-Match: *).
    store.put(KEY, GOOD)
    with pytest.raises(AlreadyExistsError):
        copy_unchanged(store, KEY, target, _listed(store).etag, len(GOOD))
    assert store.get(target) == BAD


def test_above_the_single_copy_limit_the_server_copies_in_parts(store):
    body = os.urandom(6 * MiB + 100)
    store.put("incoming/big.parquet", body)
    file = _listed(store, "incoming/big.parquet")
    limits = {"single_copy_max_bytes": 5 * MiB, "part_bytes": 5 * MiB}
    with _requests(store) as sent:
        copy_unchanged(store, file.key, "failed/x/big.parquet", file.etag, file.size, **limits)
    assert sent["UploadPartCopy"] == 2 and sent["CompleteMultipartUpload"] == 1
    assert sent["CopyObject"] == sent["GetObject"] == sent["PutObject"] == sent["UploadPart"] == 0
    assert store.get("failed/x/big.parquet") == body
    assert store.etag("failed/x/big.parquet").endswith('-2"')  # made of two parts

    # The source replaced between its two parts: the second part is refused, the upload
    # aborted, nothing stored under the target.
    parts: Counter = Counter()
    other = ObjectStore(bucket=store.bucket)

    def replace_before_the_second_part(**_: Any) -> None:
        parts["sent"] += 1
        if parts["sent"] == 2:
            other.put("incoming/big.parquet", GOOD)

    with s3_hook(
        "before-send.s3.UploadPartCopy", replace_before_the_second_part, store.client.meta.events
    ):
        with pytest.raises(SourceChangedError, match="was replaced or deleted since it was listed"):
            copy_unchanged(store, file.key, "failed/y/big.parquet", file.etag, file.size, **limits)
    assert parts["sent"] == 2 and not store.exists("failed/y/big.parquet")
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert store.get("incoming/big.parquet") == GOOD


def test_a_corrected_upload_made_before_the_copy_is_kept_and_nothing_is_set_aside(store):
    store.put(KEY, BAD)
    file = _listed(store)
    store.put(KEY, GOOD)  # after this run listed the file, before it sets it aside
    store.put("failures/incoming/bad.parquet.json", b'{"failures": 3}')
    assert set_aside(store, file, new_set_aside_id()) == SetAside(None, original_kept=True)
    assert store.get(KEY) == GOOD and store.list_keys("failed/") == []
    assert not store.exists("failures/incoming/bad.parquet.json")  # the new upload counts anew


@pytest.mark.parametrize(
    "when",
    [
        "after-call.s3.CopyObject",  # caught by the ETag compared before the delete
        "before-send.s3.DeleteObject",  # after that comparison: refused by the server (If-Match)
    ],
)
def test_a_corrected_upload_made_between_copy_and_delete_is_kept(store, when):
    store.put(KEY, BAD)
    file = _listed(store)
    with _upload_when(store, when, GOOD):
        moved = set_aside(store, file, new_set_aside_id())
    assert moved.original_kept and moved.key is not None
    assert store.get(KEY) == GOOD  # the correction stays for the next run
    assert store.get(moved.key) == BAD  # and the content that failed is set aside


def test_on_a_server_ignoring_if_match_on_delete_the_etag_check_keeps_a_corrected_upload(store):
    store.put(KEY, BAD)
    file = _listed(store)
    with (
        s3_hook(*header_ignored("DeleteObject", "If-Match"), store.client.meta.events),
        _upload_when(store, "after-call.s3.CopyObject", GOOD),
    ):
        moved = set_aside(store, file, new_set_aside_id())
    assert moved.original_kept and store.get(KEY) == GOOD and store.get(moved.key) == BAD


def test_only_files_under_incoming_are_set_aside(store):
    store.put("models/latest.json", b'{"version": "v"}')
    marker = IncomingFile("models/latest.json", store.etag("models/latest.json").strip('"'), 16)
    with pytest.raises(ValueError, match="only files under incoming/ are set aside"):
        set_aside(store, marker, new_set_aside_id())
    assert store.get("models/latest.json") == b'{"version": "v"}'
    assert store.list_keys("failed/") == []


def test_a_new_upload_under_the_same_key_starts_its_own_failure_count(store):
    store.put(KEY, BAD)
    file = _listed(store)
    assert [record_failure(store, file, "not parquet", "run-a") for _ in range(2)] == [1, 2]
    store.put(KEY, b"PAR1 another broken upload")
    assert record_failure(store, _listed(store), "not parquet", "run-b") == 1
