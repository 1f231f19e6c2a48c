"""The hourly job's files that fail: how many runs failed on each, and setting aside the ones
that keep failing (taxi/incoming.py has the rest of its bookkeeping).

    failures/<name>.json                   how many runs failed on this content of the file
                                           (its ETag) so far, and the last error; deleted once
                                           the file succeeds or is set aside
    failed/<id>/incoming/<path>            a file set aside after `set_aside_after` failed
                                           runs (Settings.set_aside_after_failures, default
                                           3): never listed again until a person moves it
                                           back under incoming/; <id> (new_set_aside_id) is
                                           new for every set-aside

Setting a file aside is a move that loses nothing: a copy made by the S3 server (never read
into this process, multipart above 5 GiB) of the very object that failed (its ETag), to a key
no earlier set-aside used, then a delete of the original only while it is still that object
(ObjectStore.delete_if_still). A corrected upload made meanwhile, under the same key, stays
under incoming/ and is tried by the next run with a count of its own.

Plain Python on an ObjectStore, no Prefect.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from taxi.incoming import IncomingFile
from taxi.layout import INCOMING_PREFIX, failure_count_key, set_aside_key
from taxi.storage.copies import SourceChangedError, copy_unchanged
from taxi.storage.errors import AlreadyExistsError, NotFoundError
from taxi.storage.objects import ObjectStore

# The error kept in a failure record: enough to say what went wrong, not a whole traceback.
MAX_ERROR_CHARS = 500

__all__ = ["SetAside", "clear_failures", "new_set_aside_id", "record_failure", "set_aside"]


@dataclass(frozen=True)
class SetAside:
    """What became of a file to set aside."""

    key: str | None  # its copy under failed/; None: replaced before it could be copied
    original_kept: bool  # a new upload replaced it meanwhile, and stays under incoming/


def record_failure(
    store: ObjectStore, file: IncomingFile, error: str, run: str, now: datetime | None = None
) -> int:
    """Count one more failed run on `file` (its failure record) and return the count so far.

    The count is of this content of the file: a record of another ETag (a new upload under the
    same key) starts it again, so a corrected file is not set aside for its predecessor's
    failures. Called by the run holding the file's claim, or by a run whose claim on it failed
    with an error: two such runs at once may count one failure instead of two (read-then-write),
    which only delays setting the file aside."""
    key = failure_count_key(file.key)
    try:
        previous = json.loads(store.get(key))
        failures = int(previous["failures"]) if previous["input_etag"] == file.etag else 0
    except NotFoundError:
        failures = 0
    except (ValueError, KeyError, TypeError):
        failures = 0  # an unreadable record (edited by hand?) starts the count again
    record = {
        "input": store.uri(file.key),
        "input_etag": file.etag,
        "failures": failures + 1,
        "last_error": str(error)[:MAX_ERROR_CHARS],
        "last_run": run,
        "last_failed_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    store.put_verified(key, json.dumps(record, indent=2).encode(), "application/json")
    return failures + 1


def clear_failures(store: ObjectStore, file: IncomingFile) -> None:
    """Forget the failures of `file` (it succeeded, or was set aside)."""
    store.delete(failure_count_key(file.key))


def new_set_aside_id(now: datetime | None = None) -> str:
    """The folder of one set-aside under failed/: UTC time and a random part, e.g.
    20260101T120000Z-1a2b3c (sorted by time, and distinct for two set-asides in one second)."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def set_aside(store: ObjectStore, file: IncomingFile, set_aside_id: str) -> SetAside:
    """Move `file`, the object listed (its ETag), to failed/<set_aside_id>/ (taxi.layout.
    set_aside_key), then forget its failures. Give each set-aside its own id
    (new_set_aside_id), the same one to each try of it: a retry after the copy was made finds
    its own copy and goes on. If any step fails the original is still in place."""
    if not file.key.startswith(INCOMING_PREFIX):
        raise ValueError(f"only files under {INCOMING_PREFIX} are set aside")
    target = set_aside_key(file.key, set_aside_id)
    try:
        copy_unchanged(store, file.key, target, file.etag, file.size)
    except SourceChangedError:
        clear_failures(store, file)  # the new upload counts its own failures
        copied = target if store.exists(target) else None  # by an earlier try of this set-aside
        return SetAside(copied, original_kept=True)
    except AlreadyExistsError:
        if store.size(target) != file.size:  # not this set-aside's own copy
            raise
    deleted = store.delete_if_still(file.key, file.etag)
    clear_failures(store, file)
    return SetAside(target, original_kept=not deleted)
