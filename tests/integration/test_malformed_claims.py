"""Claims that no run wrote (`{}`, not JSON, a naive or future time), against the real Prefect and
S3 servers: each is the file's failure in the run that finds it, counted and reported, and is
removed so that the next run predicts the file; none hides the file or sets a good file aside."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taxi.incoming import (
    Claim,
    ClaimResult,
    MalformedClaimError,
    claim,
    list_incoming,
)
from taxi.storage.objects import ObjectStore
from tests.integration import prefect_api as api
from tests.integration.faults.s3_faults import s3_hook
from tests.paths import YELLOW_FEB

CLAIM = "claims/incoming/x.csv.json"
SECRET = "do-not-repeat-me"  # what a malformed claim holds never reaches a message


def _claim_body(claimed_at: object) -> bytes:
    return json.dumps(
        {"input": "incoming/x.csv", "owner": SECRET, "claimed_at": claimed_at}
    ).encode()


NOW = datetime.now(UTC)
MALFORMED = {
    "an empty object": (b"{}", "has no claimed_at time"),
    "not JSON": (b"\xff\xfe" + SECRET.encode(), "is not JSON"),
    "a JSON list": (json.dumps([SECRET]).encode(), "has no claimed_at time"),
    "a number for a time": (_claim_body(20260101), "has no claimed_at time"),
    "not a time": (_claim_body(SECRET), "has a claimed_at that is not an ISO 8601 time"),
    "a naive time": (
        _claim_body(NOW.replace(tzinfo=None).isoformat()),
        "has a claimed_at without a time zone",
    ),
    "a time in the future": (
        _claim_body((NOW + timedelta(days=365)).isoformat()),
        "has a claimed_at in the future",
    ),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_claim_is_refused_by_name_and_removed(store, kind):
    body, problem = MALFORMED[kind]
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    store.put(CLAIM, body)
    with pytest.raises(MalformedClaimError) as error:
        claim(store, file, "run-a")
    assert str(error.value) == (
        f"its claim {store.uri(CLAIM)} {problem}, removed: the next run claims the file"
    )
    assert SECRET not in str(error.value)
    assert not store.exists(CLAIM)
    taken = claim(store, file, "run-b")  # the next run
    assert taken.outcome is Claim.CLAIMED and taken.etag == store.etag(CLAIM)


def test_a_claim_dated_a_little_ahead_is_live(store):
    """A run whose clock is a little ahead writes such a claim: it is busy, not malformed."""
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    ahead = datetime.now(UTC) + timedelta(minutes=2)
    store.put(CLAIM, _claim_body(ahead.isoformat()))
    held = store.etag(CLAIM)
    assert claim(store, file, "run-a") == ClaimResult(Claim.BUSY)
    assert store.etag(CLAIM) == held


def test_a_malformed_claim_replaced_meanwhile_is_left_alone(store):
    """Between this run's read of a malformed claim and its delete, another run (or a person)
    writes a good claim there: that one stays. The write is real, made from a hook."""
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    store.put(CLAIM, b"{}")
    other, live = ObjectStore(bucket=store.bucket), _claim_body(datetime.now(UTC).isoformat())

    def write_a_live_claim(**_: Any) -> None:
        other.put(CLAIM, live)

    with s3_hook("before-send.s3.HeadObject", write_a_live_claim, store.client.meta.events):
        with pytest.raises(MalformedClaimError, match="has no claimed_at time, changed meanwhile"):
            claim(store, file, "run-a")
    assert store.get(CLAIM) == live


def test_the_hourly_job_reports_a_malformed_claim_and_predicts_the_file_next_run(
    published, monkeypatch
):
    """With TAXI_SET_ASIDE_AFTER_FAILURES=1 any other failure would set the file aside at once:
    a malformed claim is counted and reported, but never sets a good file aside."""
    from flows.inference import incoming_inference_flow

    store, version = published
    monkeypatch.setenv("TAXI_SET_ASIDE_AFTER_FAILURES", "1")
    for name in ("x.csv", "y.csv", "good.csv"):
        store.put(f"incoming/{name}", YELLOW_FEB.read_bytes())
    store.put(CLAIM, b"{}")
    future = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    store.put("claims/incoming/y.csv.json", _claim_body(future))

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result()
    assert state.is_completed() and [p["input"] for p in summary["predicted"]] == [
        "incoming/good.csv"
    ]
    failed = {f["input"]: f for f in summary["failed"]}
    assert sorted(failed) == ["incoming/x.csv", "incoming/y.csv"]
    assert failed["incoming/x.csv"]["error"] == (
        f"could not claim it: MalformedClaimError: its claim {store.uri(CLAIM)} has no "
        "claimed_at time, removed: the next run claims the file"
    )
    assert "has a claimed_at in the future" in failed["incoming/y.csv"]["error"]
    assert all(f["failures"] == 1 and f["set_aside"] is None for f in failed.values())
    assert summary["set_aside"] == [] and store.list_keys("failed/") == []
    assert json.loads(store.get("failures/incoming/x.csv.json"))["failures"] == 1
    assert store.list_keys("claims/") == []
    run = state.state_details.flow_run_id
    [report] = api.artifacts(run, "taxi-incoming-inference")
    assert "`incoming/x.csv` | **failed** (retried next run; failed runs so far: 1)" in report.data
    assert "has a claimed\\_at in the future" in report.data and SECRET not in report.data
    assert any("Could not predict incoming/y.csv" in line for line in api.logs(run))

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result()
    assert state.is_completed() and summary["failed"] == []
    assert sorted(p["input"] for p in summary["predicted"]) == ["incoming/x.csv", "incoming/y.csv"]
    assert store.list_keys("failures/") == [] and store.list_keys("claims/") == []
    assert store.exists(f"predictions/incoming/x.csv/{version}.parquet")
