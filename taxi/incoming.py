"""Bookkeeping for the hourly inference of files that arrive under an `incoming/` prefix.

Each input file is predicted once. Three kinds of object in the bucket (keys: taxi.layout)
make that hold across reruns, overlapping runs and failures:

    incoming/<path>                        input files, dropped there by whoever produces them
    claims/incoming/<path>.json            "a run is predicting this file now": created with an
                                           S3 conditional write (If-None-Match: *), so of two
                                           runs racing for a file exactly one gets it; deleted
                                           when that run is done with the file, success or not
    processed/incoming/<path>.json         "this file is done": written only after its
                                           predictions object exists; names that object

    failures/incoming/<path>.json          how many runs failed on this file so far, and
                                           the last error; deleted once the file succeeds
                                           or is set aside
    failed/incoming/<path>                 a file set aside after `set_aside_after` failed
                                           runs (Settings.set_aside_after_failures, default
                                           3): never listed again until a person moves it
                                           back under incoming/

A run skips files with a done-record, claims the others one by one and predicts the ones it
claimed. A file that fails gets no done-record and its claim is released, so the next run
tries it again, until it has failed in `set_aside_after` runs: then it is moved (copied,
the copy verified, then deleted) under failed/, so that a file that can never be predicted
is reported once instead of failing every hourly run. A claim left behind by a run that was
killed expires after CLAIM_TTL.

Plain Python on an ObjectStore, no Prefect: flows/inference.py wires these into a flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from taxi.layout import (
    claim_key,
    done_record_input,
    done_record_key,
    done_records_prefix,
    failure_count_key,
    prediction_name,
    set_aside_key,
)
from taxi.storage.objects import NotFoundError, ObjectStore, StorageError

# The error kept in a failure record: enough to say what went wrong, not a whole traceback.
MAX_ERROR_CHARS = 500

# Longer than any single file's inference (seconds to a few minutes) by a wide margin: a claim
# older than this belongs to a run that died without releasing it.
CLAIM_TTL = timedelta(hours=2)

__all__ = [
    "CLAIM_TTL",
    "Claim",
    "IncomingFile",
    "claim",
    "claim_key",
    "done_record_key",
    "list_incoming",
    "prediction_name",
    "processed_keys",
    "clear_failures",
    "record_done",
    "record_failure",
    "release",
    "set_aside",
]


@dataclass(frozen=True)
class IncomingFile:
    key: str
    etag: str
    size: int


class Claim(Enum):
    CLAIMED = "claimed"  # this run owns the file now
    DONE = "done"  # another run finished it since this run listed the bucket
    BUSY = "busy"  # another run is predicting it right now


def list_incoming(store: ObjectStore, prefix: str) -> list[IncomingFile]:
    """Input files under `prefix`, sorted by key ("folder" placeholder objects left out)."""
    return sorted(
        (
            IncomingFile(item["Key"], str(item.get("ETag", "")).strip('"'), int(item.get("Size", 0)))
            for item in store.list_objects(prefix)
            if not item["Key"].endswith("/")
        ),
        key=lambda f: f.key,
    )


def processed_keys(store: ObjectStore, prefix: str) -> set[str]:
    """Input keys under `prefix` that have a done-record (one listing, not one request per file)."""
    inputs = (done_record_input(key) for key in store.list_keys(done_records_prefix(prefix)))
    return {key for key in inputs if key is not None}


def claim(store: ObjectStore, file: IncomingFile, owner: str, now: datetime | None = None) -> Claim:
    """Try to take `file` for this run (`owner` names the run in the claim, for people reading
    the bucket)."""
    now = now or datetime.now(UTC)
    key = claim_key(file.key)
    body = json.dumps({"input": file.key, "owner": owner, "claimed_at": now.isoformat(timespec="seconds")}).encode()
    if not store.put_if_absent(key, body):
        if not _claim_is_stale(store, key, now):
            return Claim.BUSY
        # The run holding it died: take it over. Two runs doing this at the same moment could
        # both win (delete, then create), which the deployment's concurrency limit rules out.
        store.delete(key)
        if not store.put_if_absent(key, body):
            return Claim.BUSY
    # Another run may have finished the file and released its claim between our listing of
    # done-records and our claim: check again now that nobody else can start it.
    if store.exists(done_record_key(file.key)):
        store.delete(key)
        return Claim.DONE
    return Claim.CLAIMED


def _claim_is_stale(store: ObjectStore, key: str, now: datetime) -> bool:
    try:
        claimed_at = datetime.fromisoformat(json.loads(store.get(key))["claimed_at"])
    except StorageError:
        return True  # released between our write and our read: free to take
    except (ValueError, KeyError, TypeError):
        return False  # unreadable claim: leave it to a person rather than guess
    return now - claimed_at > CLAIM_TTL


def release(store: ObjectStore, file: IncomingFile) -> None:
    store.delete(claim_key(file.key))


def record_done(store: ObjectStore, file: IncomingFile, predictions_uri: str, model_version: str, run: str) -> dict[str, Any]:
    """Write the done-record of `file`; call only once its predictions object is written."""
    record = {
        "input": store.uri(file.key),
        "input_etag": file.etag,
        "input_bytes": file.size,
        "predictions": predictions_uri,
        "model_version": model_version,
        "run": run,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.put_verified(done_record_key(file.key), json.dumps(record, indent=2).encode(), "application/json")
    return record


def record_failure(store: ObjectStore, file: IncomingFile, error: str, run: str, now: datetime | None = None) -> int:
    """Count one more failed run on `file` (its failure record) and return the count so far.

    Only the run holding the file's claim calls this, so read-then-write does not race."""
    key = failure_count_key(file.key)
    try:
        previous = json.loads(store.get(key))
        failures = int(previous["failures"])
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


def set_aside(store: ObjectStore, file: IncomingFile) -> str:
    """Move `file` under failed/ (taxi.layout.set_aside_key): copy, read the copy back and
    check its bytes, then delete the original and its failure record. Returns the
    new key. If any step fails the original is still in place."""
    target = set_aside_key(file.key)
    store.put_verified(target, store.get(file.key))  # reads the copy back: same bytes or an error
    store.delete(file.key)
    clear_failures(store, file)
    return target
