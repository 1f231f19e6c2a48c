"""The batch inference flow: load a model version, process a trip file, predict, store."""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

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
        logger.warning("Values not seen in training (predicted with the model's fallback for unknowns): %s", unknown)
    predictions = predictions_frame(processed, tasks.predict(loaded.model, processed.X))
    uri = tasks.write_predictions(predictions, input_path, loaded.version)
    create_link_artifact(key="taxi-predictions", link=uri, link_text=uri, description=f"Predictions for `{input_path}`")
    create_markdown_artifact(
        key="taxi-inference-report",
        markdown=inference_report(input_path, uri, loaded.version, loaded.manifest.get("model_type", "linear"), len(predictions), unknown),
        description=f"{len(predictions):,} trips predicted with model {loaded.version}",
    )
    logger.info("Predicted %d trips from %s with model %s -> %s", len(predictions), input_path, loaded.version, uri)
    return uri


def inference_report(input_path: str, uri: str, version: str, model_type: str, rows: int, unknown: dict[str, int]) -> str:
    unseen = "\n".join(f"| {column} | {count:,} |" for column, count in unknown.items())
    return f"""# Inference run

| | |
|---|---|
| input | `{input_path}` |
| trips predicted | {rows:,} (every input trip, in input order) |
| model version | `{version}` ({model_type}) |
| predictions | `{uri}` |

Values not seen in training (predicted with the model's fallback for unknowns):

| column | trips |
|---|---:|
{unseen}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the inference flow once, outside any deployment.")
    parser.add_argument("input_path")
    parser.add_argument("--model-version", default="latest")
    args = parser.parse_args()
    print(inference_flow(args.input_path, args.model_version))


if __name__ == "__main__":
    main()
