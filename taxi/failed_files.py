"""The hourly job's files that fail: how many runs failed on each, and setting aside the ones
that keep failing (taxi/incoming.py has the rest of its bookkeeping).

    failures/<name>.json                   how many runs failed on this content of the file
                                           (its ETag) so far, the last error, and the run
                                           trying it now; deleted once the file succeeds or is
                                           set aside
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

A run that dies while it holds the file (killed, out of memory, its host lost) raises nothing
and records nothing: so each attempt is counted when the file is claimed (record_attempt), as a
failure that success clears, and the next run to claim the file finds the dead run's attempt
still open and sets the file aside when the count has reached `set_aside_after`.

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

# The failure recorded for an attempt whose run never said how it ended.
UNFINISHED = (
    "a run ended without finishing it (its process died: killed, out of memory or its host lost)"
)

__all__ = [
    "Attempt",
    "SetAside",
    "clear_failures",
    "new_set_aside_id",
    "record_attempt",
    "record_failure",
    "set_aside",
]


@dataclass(frozen=True)
class Attempt:
    """What a run found when it began an attempt on a file."""

    failures: int  # failed runs on this content of the file before this attempt
    unfinished: bool  # the last attempt's run died before recording how it ended


@dataclass(frozen=True)
class SetAside:
    """What became of a file to set aside."""

    key: str | None  # its copy under failed/; None: replaced before it could be copied
    original_kept: bool  # a new upload replaced it meanwhile, and stays under incoming/


def record_attempt(
    store: ObjectStore, file: IncomingFile, run: str, limit: int, now: datetime | None = None
) -> Attempt:
    """Count the attempt `run` begins on `file` as a failure until it ends (record_failure or
    clear_failures), so that a run that dies meanwhile has counted it. Call only while holding
    the file's claim: an attempt still open in the record is then of a run that died, counted
    already. When that dead run's was the `limit`-th failure, nothing is written: the caller
    sets the file aside instead of trying it, since a file that kills its runs kills them all."""
    failures, previous = _count(store, file)
    dead_run = _attempt_run(previous)
    if dead_run is not None and failures >= limit:
        return Attempt(failures, unfinished=True)
    record = _failure(store, file, failures + 1, UNFINISHED, run, now)
    if dead_run is None:  # the last failure's details stay until this attempt ends
        for field in ("last_error", "last_run", "last_failed_at"):
            record[field] = previous.get(field)
    else:
        record["last_run"] = dead_run
    _write(store, file, {**record, "attempt_run": run})
    return Attempt(failures, unfinished=dead_run is not None)


def record_failure(
    store: ObjectStore, file: IncomingFile, error: str, run: str, now: datetime | None = None
) -> int:
    """Count one more failed run on `file` (its failure record) and return the count so far:
    `run`'s attempt if it recorded one (record_attempt), which counted it already.

    The count is of this content of the file: a record of another ETag (a new upload under the
    same key) starts it again, so a corrected file is not set aside for its predecessor's
    failures. Called by the run holding the file's claim, or by a run whose claim on it failed
    with an error: two such runs at once may count one failure instead of two (read-then-write),
    which only delays setting the file aside."""
    failures, previous = _count(store, file)
    open_attempt = _attempt_run(previous)
    own_attempt = open_attempt == run
    count = failures if own_attempt and failures else failures + 1
    record = _failure(store, file, count, error, run, now)
    if not own_attempt:
        record["attempt_run"] = open_attempt  # the claim holder's, if one is open
    _write(store, file, record)
    return count


def _count(store: ObjectStore, file: IncomingFile) -> tuple[int, dict]:
    """The failures counted on this content of `file`, and its record (empty: none, or of
    another content)."""
    try:
        previous = json.loads(store.get(failure_count_key(file.key)))
        if previous["input_etag"] == file.etag:
            return int(previous["failures"]), previous
    except NotFoundError:
        pass
    except (ValueError, KeyError, TypeError):
        pass  # an unreadable record (edited by hand?) starts the count again
    return 0, {}


def _attempt_run(record: dict) -> str | None:
    """The run whose attempt is open in `record` (anything but a string: none)."""
    run = record.get("attempt_run")
    return run if isinstance(run, str) else None


def _failure(
    store: ObjectStore,
    file: IncomingFile,
    failures: int,
    error: str,
    run: str,
    now: datetime | None,
) -> dict:
    return {
        "input": store.uri(file.key),
        "input_etag": file.etag,
        "failures": failures,
        "last_error": str(error)[:MAX_ERROR_CHARS],
        "last_run": run,
        "last_failed_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "attempt_run": None,
    }


def _write(store: ObjectStore, file: IncomingFile, record: dict) -> None:
    body = json.dumps(record, indent=2).encode()
    store.put_verified(failure_count_key(file.key), body, "application/json")


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
