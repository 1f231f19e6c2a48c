"""Files over the caps on rows and decompressed bytes (TAXI_MAX_ROWS, TAXI_DOWNLOAD_MAX_BYTES)
in each flow that reads files, against the real S3 and Prefect servers: the hourly job,
training, ingestion. Each such file fails alone, once (bad input is not retried), and is named
in the error with the cap it broke. The hostile files: tests/hostile_files.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi import DataError
from tests.hostile_files import gzip_bomb, row_bomb
from tests.integration import prefect_api as api
from tests.paths import YELLOW_FEB, YELLOW_JAN

ROWS_REFUSED = "declares 100,000,000 rows, more than the 5,000,000-row limit (TAXI_MAX_ROWS)"
# The byte cap the tests set: far above the sample files, far below what the .csv.gz unpacks to.
BYTE_CAP = 10_000_000
BYTES_REFUSED = "is more than the 10,000,000-byte limit (TAXI_DOWNLOAD_MAX_BYTES) decompressed"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {
        # Both a few hundred KB or MB, named as the TLC names its files.
        "rows": row_bomb(folder / "green_tripdata_2021-01.parquet"),
        "bytes": gzip_bomb(folder / "yellow_tripdata_2021-01.csv.gz", mebibytes=64),
    }


def _failed_once(flow_run_id, task: str, count: int) -> None:
    """`count` runs of `task` failed, each on its first try (not retried)."""

    def failed(runs):
        return [run for run in runs if run.state and run.state.is_failed()]

    runs = failed(api.task_runs(flow_run_id, task, until=lambda runs: len(failed(runs)) == count))
    assert len(runs) == count and all(run.run_count == 1 for run in runs), runs


def test_hourly_files_over_a_cap_fail_alone_and_the_others_are_predicted(
    published, hostile, monkeypatch
):
    from flows.inference import incoming_inference_flow

    store, version = published
    monkeypatch.setenv("TAXI_DOWNLOAD_MAX_BYTES", str(BYTE_CAP))
    store.put("incoming/good.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/rows.parquet", hostile["rows"].read_bytes())
    store.put("incoming/bytes.csv.gz", hostile["bytes"].read_bytes())

    state = incoming_inference_flow("incoming/", return_state=True)
    # Below the set-aside count a failed file leaves the run Completed, like any bad file.
    assert state.is_completed()
    summary = state.result()
    assert [p["input"] for p in summary["predicted"]] == ["incoming/good.csv"]
    failed = {f["input"]: f for f in summary["failed"]}
    assert sorted(failed) == ["incoming/bytes.csv.gz", "incoming/rows.parquet"]
    assert (
        f"{store.uri('incoming/rows.parquet')}: {ROWS_REFUSED}"
        in failed["incoming/rows.parquet"]["error"]
    )
    assert (
        f"{store.uri('incoming/bytes.csv.gz')}: {BYTES_REFUSED}"
        in failed["incoming/bytes.csv.gz"]["error"]
    )
    assert all(f["failures"] == 1 and f["set_aside"] is None for f in failed.values())
    _failed_once(state.state_details.flow_run_id, "load-data", 2)
    assert store.list_keys("predictions/incoming/rows.parquet/") == []
    assert store.list_keys("predictions/incoming/bytes.csv.gz/") == []
    assert store.list_keys("claims/") == []
    assert store.exists("processed/incoming/good.csv.json")


def test_training_on_a_file_over_a_cap_fails_once_naming_it(prefect_api, bucket_env, hostile):
    from flows.training import training_flow

    store = bucket_env
    store.put("data/rows.parquet", hostile["rows"].read_bytes())
    train, test = store.uri("data/rows.parquet"), str(YELLOW_JAN)
    state = training_flow(train, test, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError) as raised:
        state.result()
    assert str(raised.value) == f"{train}: {ROWS_REFUSED}"
    _failed_once(state.state_details.flow_run_id, "load-data", 1)
    assert store.list_keys("models/") == []


def test_ingesting_a_month_over_a_cap_fails_it_once_and_stores_nothing(
    prefect_api, bucket_env, hostile, monkeypatch
):
    from flows.ingest import ingest_flow

    store = bucket_env
    # A mirror (a local directory here) that serves a month holding 100 million trips.
    monkeypatch.setenv("TAXI_TLC_BASE_URL", str(hostile["rows"].parent))
    state = ingest_flow("green", "2021-01", "2021-01", return_state=True)
    assert state.is_failed()
    summary = state.result(raise_on_failure=False).summary
    [failed] = summary["failed"]
    assert failed["month"] == "2021-01"
    assert f"{hostile['rows']}: {ROWS_REFUSED}" in failed["error"]
    _failed_once(state.state_details.flow_run_id, "ingest-month", 1)
    assert store.list_keys("data/") == []
