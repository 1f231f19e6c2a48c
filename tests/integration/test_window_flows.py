"""Training on the moving window of months in the bucket, and backfilling past dates, through the
real flows against a real Prefect API and a real S3 server."""

from __future__ import annotations

import json
from datetime import date

import pytest

from taxi.seed import seed_bucket
from taxi.storage.registry import ModelRegistry
from tests.integration import prefect_api as api
from tests.paths import DATA


@pytest.fixture
def green_months(prefect_api, bucket_env):
    """The test's bucket with green 2021-01..03 ingested under data/green/."""
    seed_bucket(DATA, bucket_env)
    return bucket_env


def _manifest(store, version: str) -> dict:
    return json.loads(store.get(f"models/{version}/manifest.json"))


def test_window_as_of_picks_the_months_and_reproduces_the_course(green_months, monkeypatch):
    from flows.training import training_flow

    store = green_months
    monkeypatch.setenv("TAXI_OBJECT_URL_TEMPLATE", "http://localhost:9001/browser/{bucket}/{key}")
    state = training_flow(color="green", as_of="2021-03-15", return_state=True)
    assert state.is_completed()
    result = state.result()
    assert (result["train_months"], result["test_month"]) == (["2021-01"], "2021-02")
    assert round(result["rmse_train"], 4) == 9.7371
    assert round(result["rmse_test"], 4) == 10.4475
    assert (result["train_rows"], result["test_rows"]) == (73_908, 61_921)
    # The months are named in the manifest, the report and the log.
    manifest = _manifest(store, result["model_version"])
    data = f"s3://{store.bucket}/data/green"
    assert manifest["window"] == {
        "as_of": "2021-03-15",
        "color": "green",
        "train_months": ["2021-01"],
        "test_month": "2021-02",
        "backfill": True,
    }
    assert manifest["train_data"]["uri"] == f"{data}/green_tripdata_2021-01.parquet"
    assert manifest["test_data"]["uri"] == f"{data}/green_tripdata_2021-02.parquet"
    run_id = state.state_details.flow_run_id
    report = api.artifacts(run_id, "taxi-training-report")[0].data
    assert (
        "trained on 2021-01, tested on 2021-02" in report
        and "green_tripdata_2021-01.parquet" in report
    )
    assert any("train 2021-01; test 2021-02" in message for message in api.logs(run_id))
    # The report links objects where a browser opens them; the metrics are a table artifact.
    manifest_key = f"models%2F{result['model_version']}%2Fmanifest.json"
    assert f"](http://localhost:9001/browser/{store.bucket}/{manifest_key})" in report
    [table] = api.artifacts(run_id, "taxi-training-metrics")
    rows = json.loads(table.data)
    assert rows[0]["version"] == result["model_version"] and rows[0]["rmse_test"] == 10.4475
    assert rows[-1]["model"].startswith("course baseline") and rows[-1]["rmse_test"] == 10.4475
    # An older window than today's is a backfill: stored, not promoted, even with no champion.
    assert not result["promoted"] and "backfill" in result["promotion_reason"]
    assert ModelRegistry(store).latest_marker() is None

    april = training_flow(color="green", as_of="2021-04-02")
    assert (april["train_months"], april["test_month"]) == (["2021-02"], "2021-03")
    assert april["test_rows"] == 80_372
    assert april["promoted"]  # today's window: the newest month in the bucket is its test month
    assert ModelRegistry(store).latest_marker()["version"] == april["model_version"]

    two = training_flow(color="green", as_of="2021-04-02", train_months=2, promote=False)
    assert (two["train_months"], two["test_month"]) == (["2021-01", "2021-02"], "2021-03")
    assert two["train_rows"] == 73_908 + 61_921
    assert not two["promoted"] and "promote=False" in two["promotion_reason"]
    assert [
        m["source"] for m in _manifest(store, two["model_version"])["training_sample"]["months"]
    ] == [
        f"{data}/green_tripdata_2021-01.parquet",
        f"{data}/green_tripdata_2021-02.parquet",
    ]


def test_window_with_missing_months_fails_naming_them(green_months):
    from flows.training import training_flow

    state = training_flow(color="green", as_of="2021-03-01", train_months=3, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert (
        "2020-11" in message
        and "2020-12" in message
        and "2021-01" not in message.split("missing")[1].split("(")[0]
    )
    nothing = training_flow(color="yellow", as_of="2021-04-02", return_state=True)
    assert nothing.is_failed() and "no month in the bucket" in (nothing.message or "")
    half = training_flow(
        train_path=f"s3://{green_months.bucket}/data/green/green_tripdata_2021-01.parquet",
        return_state=True,
    )
    assert half.is_failed() and "both train_path and test_path" in (half.message or "")


def test_a_month_after_the_current_one_is_never_the_test_month(green_months):
    from flows.training import training_flow

    store = green_months
    # Whoever can write the bucket puts a complete-looking month there that cannot exist yet.
    future = "data/green/green_tripdata_2999-12.parquet"
    march = "data/green/green_tripdata_2021-03.parquet"
    store.put(future, store.get(march))
    store.put(f"{future}.manifest.json", store.get(f"{march}.manifest.json"))
    # As of a later date still, the newest month it may test on is the newest one up to now.
    state = training_flow(color="green", as_of="3000-01-15", return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert (result["train_months"], result["test_month"]) == (["2021-02"], "2021-03")
    logs = api.logs(state.state_details.flow_run_id)
    for key in (future, f"{future}.manifest.json"):
        assert any(f"Ignoring {key}: its month is after the current one" in line for line in logs)
    assert any("green months in the bucket: 2021-01, 2021-02, 2021-03" in line for line in logs)


def test_backfill_publishes_a_version_per_date_and_never_promotes(green_months):
    from flows.backfill import backfill_flow
    from flows.training import training_flow

    store = green_months
    champion = training_flow(color="green", as_of="2021-04-02")["model_version"]
    rows = backfill_flow(start="2021-03-15", end="2021-04-02", every_days=18, color="green")
    assert [(r["as_of"], r["train_months"], r["test_month"]) for r in rows] == [
        ("2021-03-15", "2021-01", "2021-02"),
        ("2021-04-02", "2021-02", "2021-03"),
    ]
    assert len({r["model_version"] for r in rows} | {champion}) == 3
    assert not any(r["promoted"] for r in rows)
    assert ModelRegistry(store).latest_marker()["version"] == champion
    for row in rows:
        metrics = json.loads(store.get(f"models/{row['model_version']}/metrics.json"))
        assert round(metrics["rmse_test"], 4) == row["rmse_test"]
    assert rows[0]["rmse_test"] == 10.4475


def test_run_parameters_are_checked_by_the_flow_without_echoing_them(prefect_api):
    from flows.training import training_flow

    for parameters, expected in (
        ({"model_type": "gbm<script>"}, "model_type must be one of linear, gbm"),
        ({"color": "purple<script>"}, "color must be one of yellow, green"),
        ({"as_of": "soon<script>"}, "as_of must be a date written YYYY-MM-DD"),
        ({"train_months": "12<script>"}, "train_months must be a whole number"),
    ):
        state = training_flow(**parameters, return_state=True)
        assert state.is_failed() and expected in state.message, (parameters, state.message)
        assert "<script>" not in state.message


def test_backfill_through_a_deployment_asks_for_one_run_per_date_never_promoting(prefect_api):
    import asyncio
    import secrets

    from prefect.client.orchestration import get_client

    from flows.backfill import trigger_deployment_runs
    from flows.parameters import backfill_dates
    from flows.training import training_flow

    name = f"taxi-training-backfill-{secrets.token_hex(3)}"

    async def register() -> None:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(training_flow.name)
            await client.create_deployment(
                flow_id, name, entrypoint="flows/training.py:training_flow"
            )

    asyncio.run(register())
    dates = backfill_dates(date(2021, 3, 1), date(2021, 3, 20), 7)
    assert dates == [date(2021, 3, 1), date(2021, 3, 8), date(2021, 3, 15)]
    run_ids = trigger_deployment_runs(
        f"{training_flow.name}/{name}", dates, {"color": "green", "promote": False}
    )

    async def read() -> list:
        async with get_client() as client:
            return [await client.read_flow_run(run_id) for run_id in run_ids]

    runs = asyncio.run(read())
    assert [run.parameters["as_of"] for run in runs] == ["2021-03-01", "2021-03-08", "2021-03-15"]
    assert all(
        run.parameters["promote"] is False and run.parameters["color"] == "green" for run in runs
    )
    with pytest.raises(ValueError, match="more than 520"):
        backfill_dates(date(2000, 1, 1), date(2030, 1, 1), 1)
