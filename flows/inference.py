"""The batch inference flow: load a model version, process a trip file, predict, store."""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact

from flows import tasks
from flows.processing import process_inference_data_flow
from taxi.pipeline import predictions_frame


@flow(name="taxi-inference", version=tasks.VERSION, log_prints=True)
def inference_flow(input_path: str, model_version: str = "latest") -> str:
    """Predict the duration of every trip in `input_path` with model `model_version` ("latest"
    or a version id) and store the predictions as one parquet object. Returns its s3:// URI."""
    logger = get_run_logger()
    loaded = tasks.load_model(model_version)
    processed = process_inference_data_flow(input_path, loaded.vectorizer)
    unknown = loaded.vectorizer.unknown_counts(processed.trips)
    if any(unknown.values()):
        logger.warning("Values not seen in training (predicted without their own coefficient): %s", unknown)
    predictions = predictions_frame(processed, tasks.predict(loaded.model, processed.X))
    uri = tasks.write_predictions(predictions, input_path, loaded.version)
    create_link_artifact(
        key="taxi-predictions",
        link=uri,
        link_text=uri,
        description=(
            f"{len(predictions):,} trips from `{input_path}` predicted with model version `{loaded.version}`; "
            f"values unseen in training: {unknown}"
        ),
    )
    logger.info("Predicted %d trips from %s with model %s -> %s", len(predictions), input_path, loaded.version, uri)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the inference flow once, outside any deployment.")
    parser.add_argument("input_path")
    parser.add_argument("--model-version", default="latest")
    args = parser.parse_args()
    print(inference_flow(args.input_path, args.model_version))


if __name__ == "__main__":
    main()
