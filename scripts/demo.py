"""Run the training flow, then the inference flow, on the sample data in the bucket.

Expects the environment written by `scripts/devstack.py start` (or your own servers).
"""

from __future__ import annotations

import os

from flows.inference import incoming_inference_flow, inference_flow
from flows.training import training_flow


def main() -> None:
    # Where the taxi-ingest flow put the shipped green months (scripts/quickstart.sh).
    data = f"s3://{os.environ.get('TAXI_BUCKET', 'taxi')}/data/green"
    trained = training_flow(f"{data}/green_tripdata_2021-01.parquet", f"{data}/green_tripdata_2021-02.parquet")
    predictions_uri = inference_flow(f"{data}/green_tripdata_2021-03.parquet")
    # What the hourly deployment does: predict every new file under incoming/ exactly once.
    hourly = incoming_inference_flow("incoming/")
    hourly_uris = ", ".join(p["predictions"] for p in hourly["predicted"]) or "nothing new"
    ui = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").removesuffix("/api")
    print(
        f"""
Done.
  Model version:      {trained['model_version']}
  RMSE train / test:  {trained['rmse_train']:.4f} / {trained['rmse_test']:.4f} minutes
  Manifest:           {trained['manifest_uri']}
  Test predictions:   {trained['predictions_uri']}
  March predictions:  {predictions_uri}
  Hourly job (incoming/): {hourly_uris}
  Prefect UI:         {ui}
  S3 file browser:    http://127.0.0.1:23646 (bucket {os.environ.get('TAXI_BUCKET', 'taxi')})
Servers keep running. Settings for your shell: source .local/env.sh
Stop them with:     bash scripts/stop.sh"""
    )


if __name__ == "__main__":
    main()
