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

A run skips files with a done-record, claims the others one by one and predicts the ones it
claimed. A file that fails gets no done-record and its claim is released, so the next run
tries it again. A claim left behind by a run that was killed expires after CLAIM_TTL.

Plain Python on an ObjectStore, no Prefect: flows/inference.py wires these into a flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from taxi.layout import claim_key, done_record_input, done_record_key, done_records_prefix, prediction_name
from taxi.storage.objects import ObjectStore, StorageError

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
    "record_done",
    "release",
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
