"""Monitoring through the real flows: reference statistics stored with each trained version,
a monitoring record, table artifact and drift event per inference run, the hourly job's plot
and set-aside of files that keep failing. Real Prefect API, real S3 server, real TLC months."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from PIL import Image

from taxi.layout import monitoring_record_key, parse_s3_uri
from tests.integration import prefect_api as api
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR, YELLOW_FEB


def _record(store, predictions_uri: str) -> dict:
    return json.loads(store.get(monitoring_record_key(parse_s3_uri(predictions_uri)[1])))


def test_green_months_match_the_test_rmse_and_a_shifted_month_is_flagged(
    prefect_api, bucket_env, tmp_path
):
    from flows.inference import inference_flow
    from flows.training import training_flow

    store = bucket_env
    # One training run per month, so each month's realized RMSE is compared with the test RMSE
    # the training flow reported on that very month (the fit on January is the same each time).
    trained = {
        month: training_flow(str(GREEN_JAN), str(path))
        for month, path in (("02", GREEN_FEB), ("03", GREEN_MAR))
    }
    for month, path in (("02", GREEN_FEB), ("03", GREEN_MAR)):
        version = trained[month]["model_version"]
        manifest = json.loads(store.get(f"models/{version}/manifest.json"))
        assert manifest["objects"]["reference.json"]["key"] == f"models/{version}/reference.json"

        state = inference_flow(str(path), version, return_state=True)
        uri = state.result()
        record = _record(store, uri)
        assert (
            f"monitoring/predictions/green_tripdata_2021-{month}/{version}.json"
            in store.list_keys("monitoring/")
        )
        assert record["input"] == str(path) and record["model_version"] == version
        assert record["rows"] == len(pd.read_parquet(path))  # every trip, before any filter
        assert record["realized_rmse"] == pytest.approx(trained[month]["rmse_test"], abs=1e-6)
        assert record["realized_rows"] == trained[month]["test_rows"]
        assert record["drift_statistics"] == "computed" and not record["drift_detected"], record
        [table] = api.artifacts(state.state_details.flow_run_id, "taxi-monitoring")
        assert table.type == "table" and "no drift" in table.description
        assert {
            "item": "realized_rmse",
            "value": record["realized_rmse"],
            "threshold": "",
            "drift": "",
        } in json.loads(table.data)
        # (other tests of the session may emit events about the same file with their own model)
        events = api.events("taxi.drift.detected", f"taxi.batch.{path}", timeout=5)
        assert [e for e in events if e["resource"]["taxi.model-version"] == version] == []

    # February with the clock moved 3 hours: the hour mix is another city's day.
    shifted = pd.read_parquet(GREEN_FEB)
    for column in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        shifted[column] = shifted[column] + pd.Timedelta(hours=3)
    changed = tmp_path / "green_tripdata_2021-02-shifted.parquet"
    shifted.to_parquet(changed)
    version = trained["02"]["model_version"]
    state = inference_flow(str(changed), version, return_state=True)
    record = _record(store, state.result())
    assert record["drift_detected"] and record["features"]["pickup_hour"]["drift"]
    assert record["realized_rmse"] == pytest.approx(
        trained["02"]["rmse_test"], abs=1e-6
    )  # same durations
    [event] = api.events("taxi.drift.detected", f"taxi.batch.{changed}", until=bool)
    assert event["resource"]["taxi.model-version"] == version
    assert "pickup_hour" in event["payload"]["drifted"]
    assert event["payload"]["record"] == store.uri(
        monitoring_record_key(parse_s3_uri(state.result())[1])
    )

    # A reference altered in the bucket fails the run, like any other object of the version.
    key = f"models/{version}/reference.json"
    store.put(key, store.get(key).replace(b'"rows"', b'"rows" ', 1))
    state = inference_flow(str(GREEN_FEB), version, return_state=True)
    assert (
        state.is_failed()
        and "reference.json does not match the sha256 in its manifest" in state.message
    )


def test_a_version_without_reference_predicts_and_says_so(published):
    from flows.inference import inference_flow

    store, version = published  # saved without reference statistics, as before monitoring
    state = inference_flow(str(YELLOW_FEB), version, return_state=True)
    record = _record(store, state.result())
    assert record["rows"] == 999 and record["realized_rmse"] is not None
    assert record["drift_statistics"].startswith("unavailable") and not record["drift_detected"]
    assert record["features"] == {} and record["prediction_drift"] is None
    [table] = api.artifacts(state.state_details.flow_run_id, "taxi-monitoring")
    assert "no drift statistics" in table.description


def test_a_file_that_keeps_failing_is_set_aside_once_and_the_plot_is_refreshed(
    published, monkeypatch
):
    from flows.inference import incoming_inference_flow

    store, version = published
    monkeypatch.setenv("TAXI_SET_ASIDE_AFTER_FAILURES", "2")
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "0")
    bad = b"PAR1 this upload was cut off"
    store.put("incoming/bad.parquet", bad)
    store.put("incoming/good.csv", YELLOW_FEB.read_bytes())

    def run():
        state = incoming_inference_flow("incoming/", return_state=True)
        summary = state.result(raise_on_failure=False)
        return state, getattr(summary, "summary", summary)

    state, summary = run()  # the first failed run: counted, listed, no alert (the run is Completed)
    assert (
        state.is_completed()
        and [f["failures"] for f in summary["failed"]] == [1]
        and summary["set_aside"] == []
    )
    assert json.loads(store.get("failures/incoming/bad.parquet.json"))["failures"] == 1
    assert store.exists("incoming/bad.parquet")
    # The good file's record is in the plot, which the run's artifacts link.
    assert Image.open(io.BytesIO(store.get("monitoring/plots/monitoring.png"))).size == (1100, 700)
    plot = summary["monitoring_plot"]
    assert (
        plot["uri"] == store.uri("monitoring/plots/monitoring.png")
        and plot["records"] == 1
        and plot["redrawn"]
    )
    [link] = api.artifacts(state.state_details.flow_run_id, "taxi-monitoring-plot")
    assert link.type == "markdown" and store.uri("monitoring/plots/monitoring.png") in link.data
    [report] = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert "newest 1 batches" in report.data and "failed runs so far: 1" in report.data

    state, summary = run()  # the second failed run: set aside, and the one Failed run (one alert)
    assert state.is_failed() and "1 set aside under failed/" in state.message
    [moved] = summary["set_aside"]
    assert moved["input"] == "incoming/bad.parquet"
    [first_copy] = store.list_keys("failed/")  # failed/<set-aside id>/<its key>
    assert moved["moved_to"] == store.uri(first_copy) and first_copy.endswith(
        "/incoming/bad.parquet"
    )
    assert store.get(first_copy) == bad and not store.exists("incoming/bad.parquet")
    assert not store.exists("failures/incoming/bad.parquet.json")
    [report] = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert "**set aside** as `" in report.data and "after 2 failed runs" in report.data

    state, summary = run()  # no longer tried, no longer failing
    assert state.is_completed() and summary["failed"] == [] and summary["files"] == 1

    # Moved back by a person: tried again, with a fresh count; set aside again after two more
    # failed runs, to a key of its own: the first set-aside is kept.
    store.put("incoming/bad.parquet", store.get(first_copy))
    state, summary = run()
    assert state.is_completed() and [f["failures"] for f in summary["failed"]] == [1]
    state, summary = run()
    assert state.is_failed() and [f["failures"] for f in summary["failed"]] == [2]
    [second] = summary["set_aside"]
    assert second["moved_to"] != moved["moved_to"]
    assert sorted(store.list_keys("failed/")) == sorted(
        [first_copy, parse_s3_uri(second["moved_to"])[1]]
    )
    assert store.get(first_copy) == bad


def test_an_hourly_run_announces_its_drifted_files_in_one_event(prefect_api, bucket_env):
    from markdown_it import MarkdownIt

    from flows.inference import incoming_inference_flow
    from flows.training import training_flow

    store = bucket_env
    training_flow(str(GREEN_JAN), str(GREEN_FEB))  # the bucket's first version: latest
    shifted = pd.read_parquet(GREEN_FEB)
    for column in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        shifted[column] = shifted[column] + pd.Timedelta(hours=3)
    buffer = io.BytesIO()
    shifted.to_parquet(buffer)
    # Keys with markup in them: a backtick and a pipe, then brackets.
    drifted = ["incoming/shifted `a` | b.parquet", "incoming/shifted [c](d).parquet"]
    for key in drifted:
        store.put(key, buffer.getvalue())
    store.put("incoming/unchanged.parquet", GREEN_FEB.read_bytes())

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result()
    assert state.is_completed() and len(summary["predicted"]) == 3, summary
    run = state.state_details.flow_run_id
    [event] = api.events("taxi.drift.detected", f"taxi.hourly-run.{run}", until=bool)
    batches = event["payload"]["batches"]
    assert sorted(b["input"] for b in batches) == sorted(store.uri(k) for k in drifted)
    assert all("pickup_hour" in b["drifted"] for b in batches) and event["payload"]["more"] == 0
    for key in drifted:  # the files' own runs announced nothing of their own
        assert api.events("taxi.drift.detected", f"taxi.batch.{store.uri(key)}", timeout=3) == []

    # The report's table keeps one row of three cells per file, each key shown as written.
    [report] = api.artifacts(run, "taxi-incoming-inference")
    tokens = MarkdownIt("commonmark").enable("table").parse(report.data)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children or []))
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    assert all(len(cells) == 3 for cells in rows), rows
    assert sorted(cells[0] for cells in rows[1:]) == sorted(
        [*drifted, "incoming/unchanged.parquet"]
    )
