"""The complete training flow: process, train, evaluate against the champion, publish, predict."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows import tasks
from flows.processing import process_train_data_flow
from taxi.evaluation import decide_promotion, evaluation_plot
from taxi.gbm import model_format
from taxi.model import check_model_type, make_vectorizer
from taxi.pipeline import predictions_frame
from taxi.storage import ArtifactStore

PLOT_OBJECT = "evaluation.png"


@flow(name="taxi-training", version=tasks.VERSION, log_prints=True)
def training_flow(
    train_path: str,
    test_path: str,
    model_type: str = "linear",
    use_trip_distance: bool = False,
    promotion_margin: float = 0.0,
) -> dict[str, Any]:
    """Train a trip-duration model on `train_path` and evaluate it on `test_path`, next to
    the current `latest` model (the champion) and the course baseline. Store it as a new
    version in S3 and make it `latest` only if it beats the champion's test RMSE by more
    than `promotion_margin` minutes. Store its predictions for the test trips.

    model_type: "linear" (the course model) or "gbm" (gradient boosting on request-time
    features). use_trip_distance: let "gbm" use the planned trip distance (off by default:
    it is only known when a route planner gives it). Paths may be local files, s3:// URIs or
    https:// URLs of TLC trip files. Returns metrics, the version, the decision and URIs.
    """
    check_model_type(model_type, use_trip_distance)
    logger = get_run_logger()
    train = process_train_data_flow(train_path, make_vectorizer(model_type, use_trip_distance))
    model = tasks.train_model(train.X, train.y, model_type)
    test = process_train_data_flow(test_path, train.vectorizer)
    metrics = {
        "rmse_train": tasks.evaluate_model(model, train.X, train.y, "train"),
        "rmse_test": tasks.evaluate_model(model, test.X, test.y, "test"),
    }
    metrics["rmse_test_course_baseline"] = (
        metrics["rmse_test"] if model_type == "linear" else tasks.course_baseline_rmse(train.trips, test.trips)
    )
    champion_version, champion_rmse = tasks.evaluate_champion(test.trips, test.y)
    decision = decide_promotion(metrics["rmse_test"], champion_version, champion_rmse, promotion_margin)
    logger.info("Promotion decision: %s (%s)", "promote" if decision.promote else "keep the champion", decision.reason)

    test_predictions = tasks.predict(model, test.X)
    plot = evaluation_plot(test.trips, test.y, test_predictions, f"{model_type} model, test data {test_path}")
    details = {
        "model_type": model_type,
        "model_format": model_format(model_type),
        "use_trip_distance": use_trip_distance,
        "features": [str(name) for name in train.vectorizer.get_feature_names_out()],
        "train_data": {"uri": train_path, "rows_read": train.rows_read, "rows_used": train.rows_kept},
        "test_data": {"uri": test_path, "rows_read": test.rows_read, "rows_used": test.rows_kept},
        "promotion": decision.as_dict(),
    }
    manifest = tasks.save_model(
        model, train.vectorizer, metrics, details, decision.promote, {PLOT_OBJECT: (plot, "image/png")}
    )
    version = manifest["version"]
    predictions_uri = tasks.write_predictions(predictions_frame(test, test_predictions), test_path, version)

    store = ArtifactStore()
    result = {
        "model_version": version,
        "model_type": model_type,
        "promoted": decision.promote,
        "promotion_reason": decision.reason,
        "champion_version": champion_version,
        "champion_rmse_test": champion_rmse,
        **metrics,
        "train_rows": train.rows_kept,
        "test_rows": test.rows_kept,
        "manifest_uri": store.manifest_uri(version),
        "plot_uri": store.uri(store.model_key(version, PLOT_OBJECT)),
        "predictions_uri": predictions_uri,
    }
    create_markdown_artifact(key="taxi-training-report", markdown=training_report(result, details), description=f"Model version {version}")
    logger.info("Training complete: version %s, RMSE train %.4f, test %.4f", version, metrics["rmse_train"], metrics["rmse_test"])
    return result


def training_report(result: dict[str, Any], details: dict[str, Any]) -> str:
    """The run's markdown artifact: what was used, how it scored, what was decided, where it is."""
    train, test = details["train_data"], details["test_data"]
    champion = (
        f"`{result['champion_version']}` | - | {result['champion_rmse_test']:.4f}"
        if result["champion_version"]
        else "none published yet | - | -"
    )
    verdict = "**Promoted**: now `latest`." if result["promoted"] else "**Not promoted**: `latest` unchanged."
    distance = " with planned trip distance" if details["use_trip_distance"] else ""
    return f"""# Training run: model version `{result['model_version']}`

{verdict} {result['promotion_reason']}.

## Data

| | source | trips read | filtered out | kept (1-60 min) |
|---|---|---:|---:|---:|
| train | `{train['uri']}` | {train['rows_read']:,} | {train['rows_read'] - train['rows_used']:,} | {train['rows_used']:,} |
| test | `{test['uri']}` | {test['rows_read']:,} | {test['rows_read'] - test['rows_used']:,} | {test['rows_used']:,} |

## RMSE (minutes)

| model | version | train | test |
|---|---|---:|---:|
| new: {details['model_type']}{distance}, {len(details['features'])} features | `{result['model_version']}` | {result['rmse_train']:.4f} | {result['rmse_test']:.4f} |
| champion (current `latest`) | {champion} |
| course baseline (one-hot + linear) | - | - | {result['rmse_test_course_baseline']:.4f} |

## Stored in S3

- Manifest: `{result['manifest_uri']}`
- Evaluation plot (predicted vs actual, error by hour): `{result['plot_uri']}`
- Test-set predictions: `{result['predictions_uri']}`
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the training flow once, outside any deployment.")
    parser.add_argument("train_path")
    parser.add_argument("test_path")
    parser.add_argument("--model-type", default="linear", choices=["linear", "gbm"])
    parser.add_argument("--use-trip-distance", action="store_true")
    parser.add_argument("--promotion-margin", type=float, default=0.0)
    args = parser.parse_args()
    print(training_flow(args.train_path, args.test_path, args.model_type, args.use_trip_distance, args.promotion_margin))


if __name__ == "__main__":
    main()
