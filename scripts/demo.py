"""Run the training flow, then the inference flow, on the sample data in the bucket.

Expects the environment written by `scripts/devstack.py start` (or your own servers).
"""

from __future__ import annotations

from flows.inference import incoming_inference_flow, inference_flow
from flows.training import training_flow
from taxi.layout import INCOMING_PREFIX, data_key, s3_uri
from taxi.settings import Settings


def main() -> None:
    settings = Settings.from_env()

    def data(month: int) -> str:
        """Where ingestion put a shipped green month of 2021 (scripts/quickstart.sh)."""
        return s3_uri(settings.bucket, data_key("green", (2021, month)))

    trained = training_flow(data(1), data(2))
    predictions_uri = inference_flow(data(3))
    # What the hourly deployment does: predict every new file under incoming/ exactly once.
    hourly = incoming_inference_flow(INCOMING_PREFIX)
    hourly_uris = ", ".join(p["predictions"] for p in hourly["predicted"]) or "nothing new"
    ui = (settings.prefect_api_url or "http://127.0.0.1:4200/api").removesuffix("/api")
    print(
        f"""
Done.
  Model version:      {trained["model_version"]}
  RMSE train / test:  {trained["rmse_train"]:.4f} / {trained["rmse_test"]:.4f} minutes
  Manifest:           {trained["manifest_uri"]}
  Test predictions:   {trained["predictions_uri"]}
  March predictions:  {predictions_uri}
  Hourly job (incoming/): {hourly_uris}
  Prefect UI:         {ui}
  S3 file browser:    http://127.0.0.1:23646 (bucket {settings.bucket})
Servers keep running. Settings for your shell: source .local/env.sh
Stop them with:     bash scripts/stop.sh"""
    )


if __name__ == "__main__":
    main()
