"""Trip files a run cannot use: missing, unreadable, not trip data, empty after the duration
filter, or with zones never seen in training. Each fails its run with a message naming the file
and what is wrong with it, and is not retried (or, for unknown zones, is predicted and counted).

A new test of what a flow does with a bad trip file belongs here; sources a run may not read at
all, or that are too large or too slow, are in test_sources.py.
"""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from taxi import encode_categorical_columns, load_data
from taxi.storage.registry import ModelRegistry
from tests.integration import prefect_api as api
from tests.integration.faults.runs import failed, ran_once
from tests.paths import DATA, GREEN_JAN, YELLOW_FEB


def _renamed_column() -> bytes:
    table = pq.read_table(GREEN_JAN).slice(0, 100)
    buffer = io.BytesIO()
    pq.write_table(
        table.rename_columns(
            [("PULocation" if c == "PULocationID" else c) for c in table.column_names]
        ),
        buffer,
    )
    return buffer.getvalue()


def _unparseable_time() -> bytes:
    lines = YELLOW_FEB.read_text().splitlines()[:20]
    row = lines[5].split(",")
    row[lines[0].split(",").index("tpep_pickup_datetime")] = "yesterday"
    return "\n".join([*lines[:5], ",".join(row), *lines[6:]]).encode() + b"\n"


def _no_rows() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pq.read_table(GREEN_JAN).slice(0, 0), buffer)
    return buffer.getvalue()


# name in the bucket -> (content, or None for no object; what the error must say)
BAD_INPUTS = {
    "missing.parquet": (None, "file not found in S3"),
    "truncated.parquet": (lambda: GREEN_JAN.read_bytes()[:600_000], "not a readable parquet file"),
    "empty.csv": (lambda: b"", "file is empty"),
    "header-only.csv": (
        lambda: YELLOW_FEB.read_bytes().split(b"\n")[0] + b"\n",
        "contains no trips",
    ),
    "no-rows.parquet": (_no_rows, "contains no trips"),
    "zones.csv": (
        lambda: (DATA / "taxi_zone_lookup.csv").read_bytes(),
        "not a TLC yellow or green trip file",
    ),
    "renamed.parquet": (_renamed_column, r"required column(s) ['PULocationID'] missing"),
    "unparseable.csv": (
        _unparseable_time,
        "column 'pickup_datetime' has 1 value(s) that are not datetimes",
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_fails_the_run_with_a_clear_message_and_no_retry(published, name):
    from flows.inference import inference_flow

    store, _ = published
    content, problem = BAD_INPUTS[name]
    if content is not None:
        store.put(f"data/{name}", content())
    uri = store.uri(f"data/{name}")

    state = inference_flow(uri, return_state=True)
    assert state.is_failed()
    assert f"DataError: {uri}: " in state.message and problem in state.message
    assert "Traceback" not in state.message
    [load] = failed(api.task_runs(state.state_details.flow_run_id, "load-data", until=failed))
    assert load.run_count == 1  # bad input is not retried
    assert store.list_keys("predictions/") == []


def test_training_data_left_empty_by_the_filter_fails_the_run(prefect_api, bucket_env):
    from flows.training import training_flow

    trips = pq.read_table(GREEN_JAN).slice(0, 200).to_pandas()
    trips["lpep_dropoff_datetime"] = trips["lpep_pickup_datetime"]  # every trip lasts 0 minutes
    buffer = io.BytesIO()
    trips.to_parquet(buffer)
    bucket_env.put("data/zero.parquet", buffer.getvalue())
    uri = bucket_env.uri("data/zero.parquet")

    state = training_flow(uri, str(YELLOW_FEB), return_state=True)
    assert state.is_failed()
    assert (
        f"DataError: {uri}: no trips left after keeping durations of 1-60 minutes (200 read)"
        in state.message
    )
    loads = api.task_runs(
        state.state_details.flow_run_id, "load-data", until=lambda r: r and r[0].state.is_final()
    )
    assert [run.run_count for run in loads] == [1]  # the test month is never read
    assert (
        ModelRegistry(bucket_env).latest_marker() is None and bucket_env.list_keys("models/") == []
    )


def test_unknown_zones_are_predicted_and_counted(published, small_model):
    from flows.inference import inference_flow

    store, _ = published
    frame = pd.read_csv(YELLOW_FEB)
    frame.loc[:2, "PULocationID"] = 999  # no such zone
    store.put("data/unknown.csv", frame.to_csv(index=False).encode())
    expected = small_model.vectorizer.unknown_counts(
        encode_categorical_columns(load_data(store.uri("data/unknown.csv")))
    )
    assert expected["PULocationID"] >= 3

    state = inference_flow(store.uri("data/unknown.csv"), return_state=True)
    assert state.is_completed()
    predictions = pd.read_parquet(io.BytesIO(store.get(state.result().split("/", 3)[3])))
    assert len(predictions) == 999 and predictions["predicted_duration"].notna().all()
    run = state.state_details.flow_run_id
    [report] = api.artifacts(run, "taxi-inference-report")
    assert f"| `PULocationID` | {expected['PULocationID']:,} |" in report.data
    assert (
        f"Values not seen in training (predicted with the model's fallback for unknowns): {expected}"
        in api.logs(run)
    )


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server over an empty directory: every file is a 404."""
    (tmp_path / "www").mkdir()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["local", "http"])
def test_a_missing_input_file_fails_the_run_and_load_data_runs_once(
    published, tmp_path, http_server, where
):
    from flows.inference import inference_flow

    source, problem = {
        "local": (str(tmp_path / "absent.parquet"), "file not found"),
        "http": (f"{http_server}/absent.parquet", "download failed with HTTP 404 (no such file?)"),
    }[where]
    state = inference_flow(source, return_state=True)
    assert state.is_failed()
    assert f"DataError: {source}: {problem}" in state.message
    ran_once(state.state_details.flow_run_id, "load-data")
