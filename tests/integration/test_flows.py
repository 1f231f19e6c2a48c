"""Both flows end to end against a real Prefect API and a real S3 server."""

from __future__ import annotations

import asyncio
import io
import json

import pandas as pd
import pytest

from taxi.gbm import GBM_FORMAT
from taxi.seed import seed_bucket
from taxi.storage.objects import sha256_hex
from taxi.storage.registry import ModelRegistry
from tests.paths import DATA


@pytest.fixture
def seeded(prefect_api, bucket_env):
    seed_bucket(DATA, bucket_env)
    return bucket_env


def _artifacts(flow_run_id, key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    key=ArtifactFilterKey(any_=[key]),
                )
            )

    return asyncio.run(read())


def test_training_then_inference(seeded):
    from flows.inference import inference_flow
    from flows.training import training_flow

    store = seeded
    data = f"s3://{store.bucket}/data/green"
    state = training_flow(
        f"{data}/green_tripdata_2021-01.parquet",
        f"{data}/green_tripdata_2021-02.parquet",
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    assert round(result["rmse_train"], 4) == 9.7371
    assert round(result["rmse_test"], 4) == 10.4475
    assert (result["train_rows"], result["test_rows"]) == (73_908, 61_921)
    version = result["model_version"]

    manifest = json.loads(store.get(f"models/{version}/manifest.json"))
    assert manifest["train_data"] == {
        "uri": f"{data}/green_tripdata_2021-01.parquet",
        "rows_read": 76_518,
        "rows_used": 73_908,
        "sha256": [sha256_hex((DATA / "green_tripdata_2021-01.parquet").read_bytes())],
    }
    assert manifest["test_data"]["rows_used"] == 61_921
    assert set(manifest["objects"]) == {
        "model.pkl",
        "vectorizer.pkl",
        "metrics.json",
        "evaluation.png",
        "reference.json",
    }
    assert ModelRegistry(store).latest_marker()["version"] == version
    test_predictions = pd.read_parquet(
        io.BytesIO(store.get(f"predictions/green_tripdata_2021-02/{version}.parquet"))
    )
    assert len(test_predictions) == 61_921

    report = _artifacts(state.state_details.flow_run_id, "taxi-training-report")
    assert len(report) == 1 and "9.7371" in report[0].data and "10.4475" in report[0].data

    assert result["promoted"] and result["champion_version"] is None
    assert manifest["promotion"]["promote"] and manifest["promoted"]
    assert store.get(f"models/{version}/evaluation.png")[:4] == b"\x89PNG"

    # The same model again is no better than the champion: stored, not promoted.
    again = training_flow(
        f"{data}/green_tripdata_2021-01.parquet", f"{data}/green_tripdata_2021-02.parquet"
    )
    assert again["model_version"] != version and not again["promoted"]
    assert again["champion_version"] == version and round(again["champion_rmse_test"], 4) == 10.4475
    assert ModelRegistry(store).latest_marker()["version"] == version
    kept = json.loads(store.get(f"models/{again['model_version']}/manifest.json"))
    assert not kept["promoted"] and "does not beat the champion" in kept["promotion"]["reason"]

    # The gradient-boosting model beats it by far and becomes `latest`.
    state = training_flow(
        f"{data}/green_tripdata_2021-01.parquet",
        f"{data}/green_tripdata_2021-02.parquet",
        model_type="gbm",
        promotion_margin=0.5,
        return_state=True,
    )
    gbm = state.result()
    assert gbm["promoted"] and gbm["rmse_test"] <= 7.0 and gbm["champion_version"] == version
    assert round(gbm["rmse_test_course_baseline"], 4) == 10.4475
    assert ModelRegistry(store).latest_marker()["version"] == gbm["model_version"]
    assert (
        json.loads(store.get(f"models/{gbm['model_version']}/manifest.json"))["model_format"]
        == GBM_FORMAT
    )
    report = _artifacts(state.state_details.flow_run_id, "taxi-training-report")[0].data
    for expected in (
        "**Promoted**",
        f"{gbm['rmse_test']:.4f}",
        "10.4475",
        f"`{version}`",
        "76,518",
        "2,610",
        "73,908",
        gbm["manifest_uri"],
        gbm["plot_uri"],
        gbm["predictions_uri"],
    ):
        assert expected in report, expected

    state = inference_flow(f"{data}/green_tripdata_2021-03.parquet", return_state=True)
    assert state.is_completed()
    uri = state.result()
    assert (
        uri
        == f"s3://{store.bucket}/predictions/green_tripdata_2021-03/{gbm['model_version']}.parquet"
    )
    predictions = pd.read_parquet(io.BytesIO(store.get(uri.split("/", 3)[3])))
    assert len(predictions) == 83_827
    source = pd.read_parquet(DATA / "green_tripdata_2021-03.parquet")
    assert (
        predictions["pickup_datetime"].to_numpy() == source["lpep_pickup_datetime"].to_numpy()
    ).all()
    assert (predictions["DOLocationID"].to_numpy() == source["DOLocationID"].to_numpy()).all()
    link = _artifacts(state.state_details.flow_run_id, "taxi-predictions")
    assert len(link) == 1 and f"]({uri})" in link[0].data
    report = _artifacts(state.state_details.flow_run_id, "taxi-inference-report")[0].data
    assert (
        "83,827" in report
        and gbm["model_version"] in report
        and uri in report
        and "PULocationID" in report
    )

    # An older version can still be asked for by id.
    assert inference_flow(f"{data}/green_tripdata_2021-03.parquet", model_version=version).endswith(
        f"/{version}.parquet"
    )


def test_processing_flows_match_the_package(seeded):
    from flows.processing import process_inference_data_flow, process_train_data_flow
    from taxi import process_train_data

    source = str(DATA / "yellow_tripdata_2021-01.head28401.csv")
    processed = process_train_data_flow(source)
    reference = process_train_data(source)
    assert (processed.rows_read, processed.rows_kept) == (reference.rows_read, reference.rows_kept)
    assert (processed.X != reference.X).nnz == 0
    inference = process_inference_data_flow(
        str(DATA / "yellow_tripdata_2021-02.head999.csv"), processed.vectorizer
    )
    assert inference.X.shape == (999, processed.X.shape[1])


def test_bad_input_fails_the_flow_with_a_clear_error(seeded):
    from flows.inference import inference_flow
    from flows.training import training_flow
    from taxi import DataError

    store = seeded
    with pytest.raises(DataError, match="file not found in S3"):
        training_flow(
            f"s3://{store.bucket}/data/absent.parquet", f"s3://{store.bucket}/data/absent.parquet"
        )
    state = inference_flow(
        f"s3://{store.bucket}/data/green/green_tripdata_2021-03.parquet", return_state=True
    )
    assert state.is_failed()
    assert "no model has been published" in str(
        state.message
    ) or "no model has been published" in repr(state.result(raise_on_failure=False))
