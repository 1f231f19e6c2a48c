"""The hourly inference of files arriving under incoming/, against the real Prefect and S3 servers."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from taxi import process_inference_data, run_training
from taxi.config import MODEL_FORMATS
from taxi.incoming import (
    CLAIM_TTL,
    Claim,
    ClaimResult,
    ConditionalWritesUnsupportedError,
    IncomingFile,
    check_conditional_writes,
    claim,
    list_incoming,
    record_done,
    release,
)
from taxi.layout import incoming_name
from taxi.storage.errors import StorageError
from taxi.storage.objects import ObjectStore
from tests.integration import prefect_api as api
from tests.integration.faults.s3_faults import error_for_key, header_ignored, s3_hook
from tests.paths import GREEN_MAR, YELLOW_FEB, YELLOW_JAN

YELLOW_MAR = YELLOW_FEB.parent / "yellow_tripdata_2021-03.head999.csv"


def _green_slice(rows: int = 1000) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pq.read_table(GREEN_MAR).slice(0, rows), buffer)
    return buffer.getvalue()


def _run(prefix: str = "incoming/"):
    from flows.inference import incoming_inference_flow

    state = incoming_inference_flow(prefix, return_state=True)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, Exception):
        summary = summary.summary  # IncomingFilesFailed carries the summary
    return state, summary


def _inputs(entries) -> list[str]:
    return sorted(e["input"] for e in entries)


def _objects(store) -> dict[str, str]:
    return {item["Key"]: item["ETag"] for item in store.list_objects("")}


def test_new_files_are_predicted_once_and_reruns_skip_them(published):
    store, version = published
    store.put("incoming/2021-02/yellow.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/2021-03/yellow.csv", YELLOW_MAR.read_bytes())  # same name, other folder

    state, summary = _run()
    assert state.is_completed()
    assert _inputs(summary["predicted"]) == [
        "incoming/2021-02/yellow.csv",
        "incoming/2021-03/yellow.csv",
    ]
    assert (
        summary["skipped"] == [] and summary["failed"] == [] and summary["model_version"] == version
    )
    for month in ("2021-02", "2021-03"):
        key = f"predictions/incoming/{month}/yellow.csv/{version}.parquet"
        assert len(pd.read_parquet(io.BytesIO(store.get(key)))) == 999
        record = json.loads(store.get(f"processed/incoming/{month}/yellow.csv.json"))
        assert record["predictions"] == store.uri(key) and record["model_version"] == version
    assert store.list_keys("claims/") == []
    report = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert len(report) == 1 and "2 predicted, 0 skipped, 0 failed" in report[0].data

    # A rerun predicts nothing and writes nothing.
    before = _objects(store)
    state, summary = _run()
    assert state.is_completed()
    assert summary["predicted"] == [] and _inputs(summary["skipped"]) == sorted(
        k for k in before if k.startswith("incoming/")
    )
    assert _objects(store) == before

    # A new file: only it is predicted.
    store.put("incoming/2021-04/green.parquet", _green_slice())
    state, summary = _run()
    assert state.is_completed()
    assert (
        _inputs(summary["predicted"]) == ["incoming/2021-04/green.parquet"]
        and len(summary["skipped"]) == 2
    )
    assert (
        len(
            pd.read_parquet(
                io.BytesIO(
                    store.get(f"predictions/incoming/2021-04/green.parquet/{version}.parquet")
                )
            )
        )
        == 1000
    )


def test_a_corrupt_file_is_reported_and_retried_without_blocking_the_others(published):
    store, version = published
    store.put("incoming/good.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/bad.parquet", b"PAR1 this upload was cut off")

    state, summary = _run()
    # Below the set-aside count the run stays Completed (no alert every hour); the file is listed.
    assert state.is_completed()
    assert "not a readable parquet file" in summary["failed"][0]["error"]
    assert _inputs(summary["predicted"]) == ["incoming/good.csv"]
    assert _inputs(summary["failed"]) == ["incoming/bad.parquet"]
    assert (
        not store.exists("processed/incoming/bad.parquet.json") and store.list_keys("claims/") == []
    )
    assert store.list_keys("predictions/incoming/bad.parquet/") == []
    report = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert (
        "`incoming/bad.parquet` | **failed** (retried next run; failed runs so far: 1)"
        in report[0].data
    )
    # Bad input is not retried within the run: the file's load-data task ran once.
    failed = lambda runs: [t for t in runs if t.state and t.state.is_failed()]  # noqa: E731
    [load] = failed(api.task_runs(state.state_details.flow_run_id, "load-data", until=failed))
    assert load.run_count == 1

    # Fixed upstream: the next run tries it again, and predicts it and only it.
    store.put("incoming/bad.parquet", _green_slice(500))
    state, summary = _run()
    assert state.is_completed()
    assert _inputs(summary["predicted"]) == ["incoming/bad.parquet"] and _inputs(
        summary["skipped"]
    ) == ["incoming/good.csv"]
    assert (
        len(
            pd.read_parquet(
                io.BytesIO(store.get(f"predictions/incoming/bad.parquet/{version}.parquet"))
            )
        )
        == 500
    )


def _two_runs_at_once() -> list:
    """Two hourly runs started together, each in its own thread: their (state, summary) pairs."""
    start = threading.Barrier(2)
    results: list = []

    def run() -> None:
        start.wait()
        results.append(_run())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def test_overlapping_runs_predict_each_file_exactly_once(published):
    store, version = published
    files = [f"incoming/part-{i}.csv" for i in range(4)]
    for key in files:
        store.put(key, YELLOW_FEB.read_bytes())
    results = _two_runs_at_once()

    assert len(results) == 2 and all(state.is_completed() for state, _ in results)
    predicted = [e["input"] for _, summary in results for e in summary["predicted"]]
    assert sorted(predicted) == files  # every file, none twice
    for _, summary in results:
        assert sorted(predicted) == sorted(
            _inputs(summary["predicted"]) + _inputs(summary["skipped"])
        )
    writes = [
        api.task_runs(
            state.state_details.flow_run_id,
            "write-predictions",
            until=lambda r, n=len(s["predicted"]): len(r) >= n,  # noqa: B008
        )
        for state, s in results
    ]
    assert sum(len(w) for w in writes) == len(files)
    for key in files:
        assert store.list_keys(f"predictions/{key}/") == [f"predictions/{key}/{version}.parquet"]
        assert store.exists(f"processed/{key}.json")
    assert store.list_keys("claims/") == []


def test_claims_are_exclusive_and_expire(store):
    """The claim protocol itself, step by step (the flow test above races it for real)."""
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    assert file == IncomingFile("incoming/x.csv", file.etag, 1) and file.etag
    first = claim(store, file, "run-a")
    assert first.outcome is Claim.CLAIMED and first.etag == store.etag("claims/incoming/x.csv.json")
    assert claim(store, file, "run-b") == ClaimResult(Claim.BUSY)
    # A claim whose run died is taken over once it is older than CLAIM_TTL.
    later = datetime.now(UTC) + CLAIM_TTL + timedelta(minutes=1)
    taken_over = claim(store, file, "run-c", now=later)
    assert taken_over.outcome is Claim.CLAIMED
    assert json.loads(store.get("claims/incoming/x.csv.json"))["owner"] == "run-c"
    record_done(store, file, "s3://somewhere/p.parquet", "v1", "run-c")
    assert release(store, file, taken_over.etag) and store.list_keys("claims/") == []
    # A run that listed before the done-record was written finds it after claiming.
    assert claim(store, file, "run-d") == ClaimResult(Claim.DONE)
    assert store.list_keys("claims/") == []


def test_release_by_a_non_owner_leaves_the_claim(store):
    """A run whose claim expired and was taken over does not delete the new owner's claim."""
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    mine = claim(store, file, "run-a")
    later = datetime.now(UTC) + CLAIM_TTL + timedelta(minutes=1)
    theirs = claim(store, file, "run-b", now=later)
    assert theirs.outcome is Claim.CLAIMED and theirs.etag != mine.etag
    # The If-Match DELETE on its own (no ETag check first) is refused by the server too.
    assert not store.delete_if_unchanged("claims/incoming/x.csv.json", mine.etag)
    assert not release(store, file, mine.etag)
    assert json.loads(store.get("claims/incoming/x.csv.json"))["owner"] == "run-b"
    # A run that took over an expired claim at the same moment as another: one of them wins.
    even_later = later + CLAIM_TTL + timedelta(minutes=1)
    first_taker = claim(store, file, "run-c", now=even_later)
    assert first_taker.outcome is Claim.CLAIMED
    assert (
        store.replace_if_unchanged("claims/incoming/x.csv.json", b"{}", theirs.etag) is None
    )  # run-b's view: stale
    assert json.loads(store.get("claims/incoming/x.csv.json"))["owner"] == "run-c"
    assert release(store, file, first_taker.etag) and not store.exists("claims/incoming/x.csv.json")


def test_a_live_claim_that_cannot_be_read_is_left_alone(store):
    """Only a missing claim is free: reading a claim that fails (403, 503) is an error for this
    file, never a reason to delete the claim. The errors are injected; the server is real."""
    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    held = claim(store, file, "run-a")
    for status, code in ((403, "AccessDenied"), (503, "ServiceUnavailable")):
        reader = ObjectStore(bucket=store.bucket)
        with s3_hook(
            *error_for_key("GetObject", store.bucket, "claims/incoming/x.csv.json", status, code),
            reader.client.meta.events,
        ):
            with pytest.raises(StorageError, match=code):
                claim(
                    reader, file, "run-b", now=datetime.now(UTC) + CLAIM_TTL + timedelta(minutes=1)
                )
        assert store.etag("claims/incoming/x.csv.json") == held.etag
    assert json.loads(store.get("claims/incoming/x.csv.json"))["owner"] == "run-a"


def test_the_server_honours_the_conditional_writes_claims_need(store):
    assert check_conditional_writes(store) is True  # SeaweedFS refuses a stale If-Match DELETE too
    assert store.list_keys("") == []  # the probe object is gone
    ignoring = ObjectStore(bucket=store.bucket)
    with s3_hook(*header_ignored("PutObject", "If-None-Match"), ignoring.client.meta.events):
        with pytest.raises(ConditionalWritesUnsupportedError, match="ignores If-None-Match"):
            check_conditional_writes(ignoring)
    ignoring = ObjectStore(bucket=store.bucket)
    with s3_hook(*header_ignored("PutObject", "If-Match"), ignoring.client.meta.events):
        with pytest.raises(ConditionalWritesUnsupportedError, match="ignores If-Match on PUT"):
            check_conditional_writes(ignoring)
    ignoring = ObjectStore(bucket=store.bucket)
    with s3_hook(*header_ignored("DeleteObject", "If-Match"), ignoring.client.meta.events):
        assert check_conditional_writes(ignoring) is False  # allowed: release checks the ETag first
    assert store.list_keys("") == []


def test_the_hourly_job_predicts_with_the_gbm_model(prefect_api, bucket_env, registry):
    """The deployed model type through the hourly flow: loaded from its verified artifact,
    predictions equal the fitted model's own on the same trips."""
    trained = run_training(str(YELLOW_JAN), str(YELLOW_FEB), model_type="gbm")
    details = {"model_type": "gbm", "model_format": MODEL_FORMATS["gbm"]}
    version = registry.save_model(
        trained.model, trained.vectorizer, metrics=trained.metrics, details=details
    )["version"]
    bucket_env.put("incoming/2021-03/green.parquet", _green_slice())

    state, summary = _run()
    assert state.is_completed() and _inputs(summary["predicted"]) == [
        "incoming/2021-03/green.parquet"
    ]
    written = pd.read_parquet(
        io.BytesIO(bucket_env.get(f"predictions/incoming/2021-03/green.parquet/{version}.parquet"))
    )
    expected = trained.model.predict(process_inference_data(str(GREEN_MAR), trained.vectorizer).X)[
        :1000
    ]
    assert np.array_equal(written["predicted_duration"].to_numpy(), expected)


def test_x_csv_and_x_parquet_are_predicted_to_distinct_objects(published):
    """Two inputs that differ only by their suffix: both predicted, each into its own
    predictions object, done-record and monitoring record, with its own rows."""
    store, version = published
    store.put("incoming/x.csv", YELLOW_FEB.read_bytes())  # 999 yellow trips
    store.put("incoming/x.parquet", _green_slice(700))  # 700 green trips

    state, summary = _run()
    assert state.is_completed() and _inputs(summary["predicted"]) == [
        "incoming/x.csv",
        "incoming/x.parquet",
    ]
    outputs = {entry["input"]: entry["predictions"] for entry in summary["predicted"]}
    assert outputs == {
        "incoming/x.csv": store.uri(f"predictions/incoming/x.csv/{version}.parquet"),
        "incoming/x.parquet": store.uri(f"predictions/incoming/x.parquet/{version}.parquet"),
    }
    for key, rows in (("incoming/x.csv", 999), ("incoming/x.parquet", 700)):
        predictions_key = f"predictions/{key}/{version}.parquet"
        table = pq.read_table(io.BytesIO(store.get(predictions_key)))
        assert (
            table.num_rows == rows
            and table.schema.metadata[b"taxi.source"] == store.uri(key).encode()
        )
        assert json.loads(store.get(f"processed/{key}.json"))["predictions"] == store.uri(
            predictions_key
        )
        monitoring = json.loads(store.get(f"monitoring/predictions/{key}/{version}.json"))
        assert monitoring["input"] == store.uri(key)
    assert store.list_keys("claims/") == []


def test_a_1020_byte_key_is_predicted_and_an_unreadable_claim_fails_only_its_file(
    published, monkeypatch
):
    """Per-file failures include the claim: a file whose (live) claim cannot be read is
    reported and counted like any failed file, its claim is left alone, and the others,
    among them a key of 1,020 bytes whose claim key would be too long if derived naively,
    are predicted. The 403 is injected; everything else is the real server."""
    store, version = published
    long_key = "incoming/" + "/".join(["d" * 200] * 4) + "/" + "f" * (1020 - 9 - 804 - 4) + ".csv"
    assert len(long_key.encode()) == 1020
    store.put(long_key, YELLOW_FEB.read_bytes())
    store.put("incoming/good.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/locked.csv", YELLOW_FEB.read_bytes())
    live = json.dumps(
        {
            "input": "incoming/locked.csv",
            "owner": "other-run",
            "claimed_at": datetime.now(UTC).isoformat(),
        }
    )
    store.put("claims/incoming/locked.csv.json", live.encode())
    held = store.etag("claims/incoming/locked.csv.json")
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "0")

    with s3_hook(
        *error_for_key(
            "GetObject", store.bucket, "claims/incoming/locked.csv.json", 403, "AccessDenied"
        )
    ):
        state, summary = _run()
    assert state.is_completed()  # below the set-aside count: no alert every hour
    assert _inputs(summary["predicted"]) == sorted([long_key, "incoming/good.csv"])
    [failed] = summary["failed"]
    assert (
        failed["input"] == "incoming/locked.csv"
        and failed["failures"] == 1
        and failed["set_aside"] is None
    )
    assert failed["error"].startswith("could not claim it:") and "AccessDenied" in failed["error"]
    assert json.loads(store.get("failures/incoming/locked.csv.json"))["failures"] == 1
    assert (
        store.etag("claims/incoming/locked.csv.json") == held
    )  # the other run's claim is untouched
    report = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert (
        "`incoming/locked.csv` | **failed** (retried next run; failed runs so far: 1)"
        in report[0].data
    )

    name = incoming_name(long_key)
    predictions_key = f"predictions/{name}/{version}.parquet"
    assert len(pd.read_parquet(io.BytesIO(store.get(predictions_key)))) == 999
    record = json.loads(store.get(f"processed/{name}.json"))
    assert record["input"] == store.uri(long_key) and record["predictions"] == store.uri(
        predictions_key
    )
    assert store.exists(f"monitoring/predictions/{name}/{version}.json")
    assert store.list_keys("claims/") == ["claims/incoming/locked.csv.json"]

    # The next run finds the long key's done-record in its listing and skips it.
    state, summary = _run()
    assert state.is_completed() and summary["predicted"] == []
    assert {e["input"]: e["reason"] for e in summary["skipped"]}[long_key] == "already predicted"


def test_the_hourly_job_refuses_a_server_that_ignores_if_none_match(published):
    """Simulated by dropping the If-None-Match header from every PUT on its way to the real
    server: the run fails before touching any file, with a clear error."""
    store, _ = published
    store.put("incoming/x.csv", YELLOW_FEB.read_bytes())
    before = _objects(store)

    from flows.inference import incoming_inference_flow

    with s3_hook(*header_ignored("PutObject", "If-None-Match")):
        state = incoming_inference_flow("incoming/", return_state=True)
    assert state.is_failed()
    assert (
        "ignores If-None-Match: * on PUT" in state.message
        and "overlapping runs could predict a file twice" in state.message
    )
    assert _objects(store) == before  # no claim, no prediction, no probe object left
    [check] = api.task_runs(
        state.state_details.flow_run_id,
        "check-conditional-writes",
        until=lambda r: r and r[0].state.is_final(),
    )
    assert check.run_count == 1  # refused, not retried


def test_overlapping_runs_that_contend_for_the_same_file(published):
    """Two runs started together against one incoming file, both held until both have listed
    the bucket (incoming files and done-records), so that both really go for the file: both
    see it, exactly one predicts it."""
    store, version = published
    store.put("incoming/contended.csv", YELLOW_FEB.read_bytes())
    listed = threading.Barrier(2, timeout=120)

    def hold_until_both_listed(params: dict, **_) -> None:
        if params.get("Bucket") == store.bucket and str(params.get("Prefix", "")).startswith(
            "processed/"
        ):
            listed.wait()

    with s3_hook("before-parameter-build.s3.ListObjectsV2", hold_until_both_listed):
        results = _two_runs_at_once()

    assert len(results) == 2 and all(state.is_completed() for state, _ in results)
    assert not listed.broken
    for state, summary in results:  # both saw the file and went for its claim
        assert summary["files"] == 1
        assert _inputs(summary["predicted"] + summary["skipped"]) == ["incoming/contended.csv"]
        assert len(api.task_runs(state.state_details.flow_run_id, "claim-file")) == 1
    predicted = [e["input"] for _, summary in results for e in summary["predicted"]]
    assert predicted == ["incoming/contended.csv"]  # exactly one run predicted it
    [loser] = [summary for _, summary in results if not summary["predicted"]]
    assert loser["skipped"][0]["reason"] in ("being predicted by another run", "already predicted")
    writes = [
        api.task_runs(state.state_details.flow_run_id, "write-predictions") for state, _ in results
    ]
    assert sum(len(w) for w in writes) == 1
    assert store.list_keys("predictions/incoming/contended.csv/") == [
        f"predictions/incoming/contended.csv/{version}.parquet"
    ]
    [winner] = [state for state, summary in results if summary["predicted"]]
    assert json.loads(store.get("processed/incoming/contended.csv.json"))["run"] == str(
        winner.state_details.flow_run_id
    )
    assert store.list_keys("claims/") == []
