"""The complete training flow: process, train, evaluate against the champion, publish, predict."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any, Literal

import prefect.runtime.flow_run
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import tasks
from flows.reports import object_link
from taxi.config import DEFAULT_MAX_TRAIN_ROWS, MODEL_FORMATS
from taxi.evaluation import decide_promotion, evaluation_plot
from taxi.ingest import check_color
from taxi.layout import MANIFEST_OBJECT, PLOT_OBJECT, REFERENCE_OBJECT, model_key, s3_uri
from taxi.model import check_model_type
from taxi.months import month_name
from taxi.pipeline import predictions_frame, run_window_training
from taxi.settings import Settings
from taxi.window import WindowPlan, parse_as_of, whole_number

ModelType = Literal["linear", "gbm"]
Color = Literal["yellow", "green"]


# Parameters are checked in the flow (below), not by Prefect's validation, whose errors repeat
# the values given: the run form still shows the choices and help from the signature.
@flow(name="taxi-training", version=tasks.VERSION, log_prints=True, validate_parameters=False)
def training_flow(
    train_path: str | None = None,
    test_path: str | None = None,
    model_type: ModelType = "linear",
    use_trip_distance: bool = False,
    promotion_margin: float = 0.0,
    color: Color = "yellow",
    as_of: date | None = None,
    train_months: int = 1,
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    promote: bool | None = None,
) -> dict[str, Any]:
    """Train a trip-duration model, evaluate it next to the current `latest` model (the
    champion) and the course baseline, store it as a new version and its test predictions.

    Args:
        train_path: A TLC trip file to train on (local path, s3:// URI or https:// URL; a
            deployment's run: only s3:// in the project's bucket(s) or https://). Given with
            test_path, it replaces the moving window.
        test_path: The TLC trip file to evaluate on, with train_path.
        model_type: "linear" (the course model) or "gbm" (gradient boosting on
            request-time features).
        use_trip_distance: Let "gbm" use the planned trip distance (off by default: it is
            only known when a route planner gives it).
        promotion_margin: Minutes of test RMSE by which the new model must beat the
            champion to become `latest`.
        color: Which TLC months of the bucket (data/<color>/) the moving window uses.
        as_of: The date the window is computed for (default: the run's scheduled start,
            or today): tests on the newest month in the bucket before this date's month,
            trains on the train_months months before that one.
        train_months: How many months the window trains on.
        max_train_rows: The "gbm" model trains on a uniform sample of at most this many
            trips of the window.
        promote: None (default): promote if the new model beats the champion, except a
            window that is not the newest one (a backfill); True: promote if it beats the
            champion, even a backfill; False: never promote.

    Returns metrics, the version, the months used, the promotion decision and URIs.
    """
    check_model_type(model_type, use_trip_distance)
    check_color(color)
    train_months = whole_number(train_months, "train_months")
    max_train_rows = whole_number(max_train_rows, "max_train_rows")
    as_of = None if as_of is None else parse_as_of(as_of)
    if not isinstance(use_trip_distance, bool) or promote not in (None, True, False):
        raise ValueError("use_trip_distance must be true or false, and promote true, false or unset")
    if isinstance(promotion_margin, bool) or not isinstance(promotion_margin, int | float):
        raise ValueError("promotion_margin must be a number of minutes")
    logger = get_run_logger()
    settings = Settings.from_env()
    tasks.check_sources(settings, train_path, test_path)
    signed = tasks.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    retrying = tasks.io_retries(settings)
    if train_path or test_path:
        if not (train_path and test_path):
            raise ValueError("give both train_path and test_path, or neither (the window then comes from as_of)")
        plan = WindowPlan.explicit(train_path, test_path)
    else:
        plan = retrying(tasks.plan_training_window)(color, as_of or scheduled_date(), train_months)
    logger.info("Training data: %s", plan.describe())

    trained = run_window_training(
        list(plan.train_sources), plan.test_source, model_type, use_trip_distance, max_train_rows,
        run=tasks.step_runner(settings),
    )  # fmt: skip
    test = trained.test
    metrics = trained.metrics
    logger.info(
        "RMSE train %.4f (%d trips), test %.4f, course baseline %.4f",
        metrics["rmse_train"], trained.rows_trained, metrics["rmse_test"], metrics["rmse_test_course_baseline"],
    )  # fmt: skip
    champion_version, champion_rmse = retrying(tasks.evaluate_champion)(test.trips, test.y)
    decision = decide_promotion(
        metrics["rmse_test"], champion_version, champion_rmse, promotion_margin, blocked=plan.promotion_blocked(promote)
    )
    logger.info("Promotion decision: %s (%s)", "promote" if decision.promote else "keep the champion", decision.reason)

    test_predictions = tasks.predict(trained.model, test.X)
    plot = evaluation_plot(test.trips, test.y, test_predictions, f"{model_type} model, test data {plan.test_source}")
    details = {
        "model_type": model_type,
        "model_format": MODEL_FORMATS[model_type],
        "use_trip_distance": use_trip_distance,
        "features": [str(name) for name in trained.vectorizer.get_feature_names_out()],
        "train_data": {
            "uri": plan.train_sources[0] if len(plan.train_sources) == 1 else list(plan.train_sources),
            "rows_read": trained.rows_read,
            "rows_used": trained.rows_kept,
        },
        "test_data": {"uri": plan.test_source, "rows_read": test.rows_read, "rows_used": test.rows_kept},
        "window": plan.as_dict(),
        "training_sample": {
            "rows_trained": trained.rows_trained,
            "sampled": trained.sampled,
            "max_train_rows": max_train_rows if model_type == "gbm" else None,
            "months": [asdict(month) for month in trained.months],
        },
        "promotion": decision.as_dict(),
    }
    attachments = {PLOT_OBJECT: (plot, "image/png")}
    # Monitoring reference (taxi.monitoring): a uniform sample of the window's training trips and
    # the model's predictions on them, stored in the version like its other objects (manifest,
    # sha256, signature); each inference batch is compared with it.
    reference_trips = trained.reference_trips
    reference_predictions = tasks.predict(trained.model, trained.vectorizer.transform(reference_trips))
    reference = tasks.reference_statistics(reference_trips, reference_predictions, use_trip_distance)
    attachments[REFERENCE_OBJECT] = (json.dumps(reference).encode(), "application/json")

    manifest = retrying(tasks.save_model)(
        trained.model, trained.vectorizer, metrics, details, decision.promote, attachments, champion_version
    )
    version = manifest["version"]
    promotion_reason = decision.reason
    if decision.promote and not manifest["promoted"]:
        promotion_reason += "; but another training moved latest meanwhile: stored, not promoted"
    predictions_uri = retrying(tasks.write_predictions)(predictions_frame(test, test_predictions), plan.test_source, version)

    result = {
        "model_version": version,
        "model_type": model_type,
        "promoted": manifest["promoted"],
        "promotion_reason": promotion_reason,
        "champion_version": champion_version,
        "champion_rmse_test": champion_rmse,
        **metrics,
        "train_months": [month_name(m) for m in plan.train_months],
        "test_month": month_name(plan.test_month) if plan.test_month else None,
        "train_rows": trained.rows_kept,
        "trained_rows": trained.rows_trained,
        "test_rows": test.rows_kept,
        "manifest_uri": s3_uri(settings.bucket, model_key(version, MANIFEST_OBJECT)),
        "plot_uri": s3_uri(settings.bucket, model_key(version, PLOT_OBJECT)),
        "predictions_uri": predictions_uri,
        "model_signed": signed,
    }
    create_markdown_artifact(
        key="taxi-training-report",
        markdown=training_report(result, details, settings.object_url_template),
        description=f"Model version {version}",
    )
    create_table_artifact(
        key="taxi-training-metrics", table=metrics_table(result), description=f"RMSE of model version {version}"
    )
    logger.info("Training complete: version %s, RMSE train %.4f, test %.4f", version, metrics["rmse_train"], metrics["rmse_test"])
    return result


def scheduled_date() -> date:
    """The run's scheduled start (UTC) as a date: a scheduled run replayed later still trains
    on the window of its own date. Today when there is no run context."""
    scheduled = prefect.runtime.flow_run.scheduled_start_time
    return scheduled.astimezone(UTC).date() if scheduled is not None else datetime.now(UTC).date()


def metrics_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's RMSE figures as rows of a table artifact: the new model, the champion, the course baseline."""
    rows = [
        {"model": f"new ({result['model_type']})", "version": result["model_version"],
         "rmse_train": round(result["rmse_train"], 4), "rmse_test": round(result["rmse_test"], 4)},
        {"model": "course baseline (one-hot + linear)", "version": "-", "rmse_train": None,
         "rmse_test": round(result["rmse_test_course_baseline"], 4)},
    ]  # fmt: skip
    if result["champion_version"]:
        rows.insert(1, {"model": "champion (latest before this run)", "version": result["champion_version"],
                        "rmse_train": None, "rmse_test": round(result["champion_rmse_test"], 4)})  # fmt: skip
    return rows


def training_report(result: dict[str, Any], details: dict[str, Any], object_url_template: str | None = None) -> str:
    """The run's markdown artifact: what was used, how it scored, what was decided, where it is."""
    test, sample = details["test_data"], details["training_sample"]
    train_rows = "\n".join(
        f"| train | `{m['source']}` | {m['rows_read']:,} | {m['rows_read'] - m['rows_kept']:,} | {m['rows_kept']:,} |"
        for m in sample["months"]
    )
    window = details["window"]
    window_line = (
        f"Window as of {window['as_of']} ({window['color']}): trained on {', '.join(window['train_months'])}, "
        f"tested on {window['test_month']}{' (a backfill)' if window['backfill'] else ''}."
        if window
        else "Files given by the caller (no moving window)."
    )
    if sample["sampled"]:
        window_line += f" The model trained on a uniform sample of {sample['rows_trained']:,} of the kept trips."
    champion = (
        f"`{result['champion_version']}` | - | {result['champion_rmse_test']:.4f}"
        if result["champion_version"]
        else "none published yet | - | -"
    )
    verdict = "**Promoted**: now `latest`." if result["promoted"] else "**Not promoted**: `latest` unchanged."
    distance = " with planned trip distance" if details["use_trip_distance"] else ""
    return f"""# Training run: model version `{result["model_version"]}`

{verdict} {result["promotion_reason"]}.

Model signature: {tasks.signing_line(result["model_signed"])}.

## Data

{window_line}

| | source | trips read | filtered out | kept (1-60 min) |
|---|---|---:|---:|---:|
{train_rows}
| test | `{test["uri"]}` | {test["rows_read"]:,} | {test["rows_read"] - test["rows_used"]:,} | {test["rows_used"]:,} |

## RMSE (minutes)

| model | version | train | test |
|---|---|---:|---:|
| new: {details["model_type"]}{distance}, {len(details["features"])} features | `{result["model_version"]}` | {result["rmse_train"]:.4f} | {result["rmse_test"]:.4f} |
| champion (current `latest`) | {champion} |
| course baseline (one-hot + linear) | - | - | {result["rmse_test_course_baseline"]:.4f} |

## Stored in S3

- Manifest: {object_link(result["manifest_uri"], object_url_template)}
- Evaluation plot (predicted vs actual, error by hour): {object_link(result["plot_uri"], object_url_template)}
- Test-set predictions: {object_link(result["predictions_uri"], object_url_template)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run the training flow once, outside any deployment: on two files, or on the moving window."
    )
    parser.add_argument("train_path", nargs="?", help="file to train on (omit both files to use the window)")
    parser.add_argument("test_path", nargs="?", help="file to test on")
    parser.add_argument("--model-type", default="linear", choices=["linear", "gbm"])
    parser.add_argument("--use-trip-distance", action="store_true")
    parser.add_argument("--promotion-margin", type=float, default=0.0)
    parser.add_argument("--color", default="yellow", choices=["yellow", "green"])
    parser.add_argument("--as-of", type=date.fromisoformat, help="window date, YYYY-MM-DD (default: today)")
    parser.add_argument("--train-months", type=int, default=1)
    parser.add_argument("--max-train-rows", type=int, default=DEFAULT_MAX_TRAIN_ROWS)
    promote = parser.add_mutually_exclusive_group()
    promote.add_argument("--promote", dest="promote", action="store_const", const=True, help="promote even a backfill")
    promote.add_argument("--no-promote", dest="promote", action="store_const", const=False, help="never promote")
    args = parser.parse_args()
    print(
        training_flow(
            args.train_path, args.test_path, args.model_type, args.use_trip_distance, args.promotion_margin,
            args.color, args.as_of, args.train_months, args.max_train_rows, args.promote,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
