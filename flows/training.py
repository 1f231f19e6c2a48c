"""The complete training flow: process, train, evaluate, publish the model version, predict."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows import tasks
from flows.processing import process_train_data_flow
from taxi.pipeline import predictions_frame
from taxi.storage import ArtifactStore


@flow(name="taxi-training", version=tasks.VERSION, log_prints=True)
def training_flow(train_path: str, test_path: str) -> dict[str, Any]:
    """Train the trip-duration model on `train_path`, evaluate it on `test_path`, store it as a
    new version in S3 and make it `latest`, and store its predictions for the test trips.

    Paths may be local files, s3://bucket/key URIs or https:// URLs of TLC trip files.
    Returns the metrics, the model version and the S3 URIs written.
    """
    logger = get_run_logger()
    train = process_train_data_flow(train_path)
    model = tasks.train_model(train.X, train.y)
    test = process_train_data_flow(test_path, train.vectorizer)
    metrics = {
        "rmse_train": tasks.evaluate_model(model, train.X, train.y, "train"),
        "rmse_test": tasks.evaluate_model(model, test.X, test.y, "test"),
    }
    details = {
        "model_type": "linear",
        "features": list(train.vectorizer.get_feature_names_out()),
        "train_data": {"uri": train_path, "rows_read": train.rows_read, "rows_used": train.rows_kept},
        "test_data": {"uri": test_path, "rows_read": test.rows_read, "rows_used": test.rows_kept},
    }
    manifest = tasks.save_model(model, train.vectorizer, metrics, details)
    version = manifest["version"]
    predictions_uri = tasks.write_predictions(predictions_frame(test, tasks.predict(model, test.X)), test_path, version)

    result = {
        "model_version": version,
        **metrics,
        "train_rows": train.rows_kept,
        "test_rows": test.rows_kept,
        "manifest_uri": ArtifactStore().manifest_uri(version),
        "predictions_uri": predictions_uri,
    }
    create_markdown_artifact(key="taxi-training-report", markdown=_report(result, details), description=f"Model version {version}")
    logger.info("Training complete: version %s, RMSE train %.4f, test %.4f", version, metrics["rmse_train"], metrics["rmse_test"])
    return result


def _report(result: dict[str, Any], details: dict[str, Any]) -> str:
    train, test = details["train_data"], details["test_data"]
    return f"""# Training run: model version `{result['model_version']}`

| | data | trips read | kept (1-60 min) | RMSE (minutes) |
|---|---|---:|---:|---:|
| train | `{train['uri']}` | {train['rows_read']:,} | {train['rows_used']:,} | {result['rmse_train']:.4f} |
| test | `{test['uri']}` | {test['rows_read']:,} | {test['rows_used']:,} | {result['rmse_test']:.4f} |

Model: {details['model_type']} regression on {len(details['features'])} one-hot features.

- Manifest: `{result['manifest_uri']}`
- Test-set predictions: `{result['predictions_uri']}`
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the training flow once, outside any deployment.")
    parser.add_argument("train_path")
    parser.add_argument("test_path")
    args = parser.parse_args()
    print(training_flow(args.train_path, args.test_path))


if __name__ == "__main__":
    main()
