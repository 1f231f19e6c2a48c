"""Bookkeeping for the hourly inference of files that arrive under an `incoming/` prefix.

Each input file is predicted once. Three kinds of object in the bucket (keys: taxi.layout;
<name> is the file's incoming name: its whole key, or a shortened name for a very long key)
make that hold across reruns, overlapping runs and failures:

    incoming/<path>                        input files, dropped there by whoever produces them
    claims/<name>.json                     "a run is predicting this file now": created with an
                                           S3 conditional write (If-None-Match: *), so of two
                                           runs racing for a file exactly one gets it; deleted
                                           by that run when it is done with the file, success
                                           or not, only while it is still the claim it wrote
                                           (If-Match: its ETag)
    processed/<name>.json                  "this file is done": written only after its
                                           predictions object exists; names that object

and taxi/failed_files.py counts the failed runs on each file (failures/<name>.json) and sets
aside, under failed/, a file that keeps failing.

A run first checks that the S3 server honours conditional writes (check_conditional_writes):
on one that ignores them every claim would succeed and two runs could predict the same file.
It then skips files with a done-record, claims the others one by one and predicts the ones it
claimed. A file that fails gets no done-record and its claim is released, so the next run
tries it again, until it has failed in `set_aside_after` runs: then it is moved under failed/,
so that a file that can never be predicted is reported once instead of failing every hourly
run. A claim left behind by a run that was
killed expires after CLAIM_TTL, or at once once its run is known to have ended (the caller's
`owner_ended`, which asks the Prefect API): another run replaces it, only if it is still that
claim (If-Match). Only a missing claim is free: a claim that cannot be read (timeout, 403, 503)
is left alone, and the error is that file's failure in this run. A claim that can be read but
that no run wrote (not JSON, no claimed_at, a time without zone or in the future) is removed
(if unchanged), and is that file's failure in this run too; the next run claims it as usual.

Plain Python on an ObjectStore, no Prefect: flows/hourly.py and flows/inference.py wire these
into a flow.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from taxi.layout import (
    INCOMING_PREFIX,
    SHORTENED_FOLDERS_BYTES,
    claim_key,
    conditional_write_probe_key,
    done_record_key,
    done_record_name,
    done_records_prefix,
    incoming_name,
)
from taxi.records import DoneRecord
from taxi.storage.errors import StorageError
from taxi.storage.objects import ObjectStore

# Longer than any single file's inference (seconds to a few minutes) by a wide margin: a claim
# older than this belongs to a run that died without releasing it.
CLAIM_TTL = timedelta(hours=2)
# Runs on machines whose clocks are a little ahead of this one's write claims dated a little
# ahead: such a claim is live, not malformed.
MAX_CLOCK_SKEW = timedelta(minutes=5)

__all__ = [
    "CLAIM_TTL",
    "Claim",
    "ClaimResult",
    "ConditionalWritesUnsupportedError",
    "IncomingFile",
    "MalformedClaimError",
    "check_conditional_writes",
    "check_incoming_prefix",
    "claim",
    "claim_key",
    "done_record_key",
    "incoming_name",
    "list_incoming",
    "processed_names",
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


@dataclass(frozen=True)
class ClaimResult:
    outcome: Claim
    etag: str | None = (
        None  # of the claim object this run wrote (CLAIMED): release deletes only that object
    )


class MalformedClaimError(ValueError):
    """A file's claim that no run of this code wrote: not JSON, no claimed_at, a naive or future
    time. The file's failure in the run that finds it; not retried."""


class ConditionalWritesUnsupportedError(StorageError):
    """The S3 server ignores conditional writes: claims would not be exclusive."""


def check_conditional_writes(store: ObjectStore) -> bool:
    """Check with a throwaway object that the S3 server honours the conditional writes that
    make claims exclusive: a second create-only PUT (If-None-Match: *) and a PUT with a stale
    ETag (If-Match) must both be refused (412). Raises ConditionalWritesUnsupportedError if
    either is accepted. Returns whether a DELETE with a stale ETag was refused too; where it
    is not (MinIO's issue tracker says its DeleteObject ignores If-Match), `release` still
    checks the claim's ETag just before deleting it."""
    key = conditional_write_probe_key(secrets.token_hex(8))
    first = store.put_if_absent(key, b"{}")
    if first is None:
        raise StorageError(
            f"{store.uri(key)} exists already: cannot check conditional writes with it"
        )
    try:
        if store.put_if_absent(key, b"{}") is not None:
            raise ConditionalWritesUnsupportedError(
                f"the S3 server at {store.client.meta.endpoint_url} ignores If-None-Match: * on PUT (a second create-only write of "
                f"{store.uri(key)} succeeded): claims would not be exclusive and overlapping runs could predict a file "
                "twice, so the hourly job does not run against it"
            )
        stale = '"00000000000000000000000000000000"'
        if store.replace_if_unchanged(key, b"{}", stale) is not None:
            raise ConditionalWritesUnsupportedError(
                f"the S3 server at {store.client.meta.endpoint_url} ignores If-Match on PUT (a write of {store.uri(key)} with a stale "
                "ETag succeeded): an expired claim could be taken over by two runs, so the hourly job does not run against it"
            )
        return not store.delete_if_unchanged(key, stale)
    finally:
        store.delete(key)


def check_incoming_prefix(prefix: object) -> str:
    """`prefix` if it is incoming/ or a folder below it, ending in /; else a ValueError that names
    the parameter, not what was given (a deployment run's parameters come from whoever starts
    it). The job sets aside the files it keeps failing on: under any other prefix those would be
    model versions, markers or predictions. Past SHORTENED_FOLDERS_BYTES the done-records of
    shortened names would no longer be under the prefix's (taxi.layout.done_records_prefix)."""
    parts = prefix[:-1].split("/") if isinstance(prefix, str) else []
    if not (
        isinstance(prefix, str)
        and prefix.startswith(INCOMING_PREFIX)
        and prefix.endswith("/")
        and all(part not in ("", ".", "..") for part in parts)
        and len(prefix.encode()) <= SHORTENED_FOLDERS_BYTES
    ):
        raise ValueError(
            f"prefix must be {INCOMING_PREFIX} or a folder below it, ending in / and at most "
            f"{SHORTENED_FOLDERS_BYTES} bytes long (such as {INCOMING_PREFIX}2021-03/)"
        )
    return prefix


def list_incoming(store: ObjectStore, prefix: str) -> list[IncomingFile]:
    """Input files under `prefix` (check_incoming_prefix), sorted by key ("folder" placeholder
    objects left out)."""
    check_incoming_prefix(prefix)
    return sorted(
        (
            IncomingFile(
                item["Key"], str(item.get("ETag", "")).strip('"'), int(item.get("Size", 0))
            )
            for item in store.list_objects(prefix)
            if not item["Key"].endswith("/")
        ),
        key=lambda f: f.key,
    )


def processed_names(store: ObjectStore, prefix: str) -> set[str]:
    """Incoming names (taxi.layout.incoming_name) of the inputs under `prefix` that have a
    done-record (one listing, not one request per file)."""
    names = (done_record_name(key) for key in store.list_keys(done_records_prefix(prefix)))
    return {name for name in names if name is not None}


def claim(
    store: ObjectStore,
    file: IncomingFile,
    owner: str,
    now: datetime | None = None,
    owner_ended: Callable[[str], bool] | None = None,
) -> ClaimResult:
    """Try to take `file` for this run (`owner` names the run in the claim). A live claim of a
    run that `owner_ended` (given the claim's owner) says has ended is taken over at once, not
    only after CLAIM_TTL. A storage error (a claim that cannot be read or written) is raised:
    the caller counts it as this file's failure, and no claim of another run is touched. So is
    a malformed claim (MalformedClaimError), which is removed first."""
    now = now or datetime.now(UTC)
    key = claim_key(file.key)
    body = json.dumps(
        {"input": file.key, "owner": owner, "claimed_at": now.isoformat(timespec="seconds")}
    ).encode()
    etag = store.put_if_absent(key, body)
    if etag is None:
        etag = _take_over_if_expired(store, key, body, now, owner_ended)
        if etag is None:
            return ClaimResult(Claim.BUSY)
    # Another run may have finished the file and released its claim between our listing of
    # done-records and our claim: check again now that nobody else can start it.
    if store.exists(done_record_key(file.key)):
        store.delete_if_unchanged(key, etag)
        return ClaimResult(Claim.DONE)
    return ClaimResult(Claim.CLAIMED, etag)


def _take_over_if_expired(
    store: ObjectStore,
    key: str,
    body: bytes,
    now: datetime,
    owner_ended: Callable[[str], bool] | None,
) -> str | None:
    """Replace the claim at `key` with ours if it has expired or its run has ended (`owner_ended`);
    returns our claim's ETag, or None while the claim is live or someone else changed it first.
    A claim this code never writes (_claimed_at) is removed and raised as MalformedClaimError."""
    # Any error but a missing claim (timeout, 403, 503) is raised: the claim may well be live.
    found = store.get_with_etag(key)
    if found is None:
        return store.put_if_absent(key, body)  # released since our write: free to take (once)
    current, current_etag = found
    try:
        claimed_at, claim_owner = _claimed_at(current, now)
    except MalformedClaimError as malformed:
        # Left in place it would hide the file from every run; taken over at once, a live
        # claim of a run that wrote it some other way could lose its file to a second run.
        # Removed, it is this run's failure of the file, and the next run claims it afresh.
        removed = store.delete_if_still(key, current_etag)
        outcome = "removed: the next run claims the file" if removed else "changed meanwhile"
        raise MalformedClaimError(f"its claim {store.uri(key)} {malformed}, {outcome}") from None
    # A run that died (Crashed) never releases its claim; waiting out CLAIM_TTL would hold the
    # file back for hours. An owner that cannot be looked up (`owner_ended` False) waits.
    ended = claim_owner is not None and owner_ended is not None and owner_ended(claim_owner)
    if now - claimed_at <= CLAIM_TTL and not ended:
        return None
    # Only if it is still the expired claim we read: of two runs taking it over, one wins.
    return store.replace_if_unchanged(key, body, current_etag)


def _claimed_at(claim_body: bytes, now: datetime) -> tuple[datetime, str | None]:
    """When a claim was written and its owner (None unless a string), or MalformedClaimError
    saying what is wrong with it (never what it holds: anyone who may write to the bucket may
    have written it)."""
    try:
        record = json.loads(claim_body)
    except ValueError:  # UnicodeDecodeError included
        raise MalformedClaimError("is not JSON") from None
    text = record.get("claimed_at") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise MalformedClaimError("has no claimed_at time")
    try:
        claimed_at = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedClaimError("has a claimed_at that is not an ISO 8601 time") from None
    if claimed_at.tzinfo is None:
        raise MalformedClaimError("has a claimed_at without a time zone")
    if claimed_at - now > MAX_CLOCK_SKEW:
        raise MalformedClaimError("has a claimed_at in the future")
    owner = record.get("owner")
    return claimed_at, owner if isinstance(owner, str) else None


def release(store: ObjectStore, file: IncomingFile, etag: str) -> bool:
    """Delete this run's claim on `file` (`etag`: the ETag of the claim it wrote), only if it
    is still that object: a claim another run took over (ours had expired) is theirs and
    stays. The ETag is compared before the delete too, for servers that ignore If-Match on
    DELETE. Returns whether the claim was deleted."""
    return store.delete_if_still(claim_key(file.key), etag)


def record_done(
    store: ObjectStore, file: IncomingFile, predictions_uri: str, model_version: str, run: str
) -> DoneRecord:
    """Write the done-record of `file`; call only once its predictions object is written."""
    record: DoneRecord = {
        "input": store.uri(file.key),
        "input_etag": file.etag,
        "input_bytes": file.size,
        "predictions": predictions_uri,
        "model_version": model_version,
        "run": run,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.put_verified(
        done_record_key(file.key), json.dumps(record, indent=2).encode(), "application/json"
    )
    return record
