"""The complete training flow: process, train, evaluate against the champion, publish, predict."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import Literal

import prefect.runtime.flow_run
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import policy, tasks
from flows.parameters import training_parameters
from flows.reports.training import metrics_table, training_report
from taxi.config import DEFAULT_MAX_TRAIN_ROWS
from taxi.evaluation import PromotionDecision, decide_promotion
from taxi.layout import MANIFEST_OBJECT, PLOT_OBJECT, model_key, s3_uri
from taxi.months import month_name
from taxi.pipeline import WindowTrainingResult, finish_training, run_window_training
from taxi.records import Manifest, TrainingSummary
from taxi.settings import Settings
from taxi.window import WindowPlan

ModelType = Literal["linear", "gbm"]
Color = Literal["yellow", "green"]


# Parameters are checked by flows.parameters, not by Prefect's validation, whose errors repeat
# the values given: the run form still shows the choices and help from the signature.
@flow(name="taxi-training", version=policy.VERSION, log_prints=True, validate_parameters=False)
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
) -> TrainingSummary:
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
    params = training_parameters(
        train_path,
        test_path,
        model_type,
        use_trip_distance,
        promotion_margin,
        color,
        as_of,
        train_months,
        max_train_rows,
        promote,
    )
    logger = get_run_logger()
    settings = Settings.from_env()
    policy.s3_keys_from_blocks(settings)
    policy.check_sources(settings, params.train_path, params.test_path)
    signed = policy.model_signing(settings)  # no signing key (and no opt-out): fail before any work
    retrying = policy.io_retries(settings)
    runner = tasks.step_runner(settings)
    if params.train_path and params.test_path:
        plan = WindowPlan.explicit(params.train_path, params.test_path)
    else:
        plan = retrying(tasks.plan_training_window)(
            params.color, params.as_of or scheduled_date(), params.train_months
        )
    logger.info("Training data: %s", plan.describe())

    trained = run_window_training(
        list(plan.train_sources),
        plan.test_source,
        params.model_type,
        params.use_trip_distance,
        params.max_train_rows,
        run=runner,
        check_read=plan.check_read,
    )
    metrics = trained.metrics
    logger.info(
        "RMSE train %.4f (%d trips), test %.4f, course baseline %.4f",
        metrics["rmse_train"],
        trained.rows_trained,
        metrics["rmse_test"],
        metrics["rmse_test_course_baseline"],
    )
    champion_version, champion_rmse = retrying(tasks.evaluate_champion)(
        trained.test.trips, trained.test.y
    )
    blocked = plan.promotion_blocked(params.promote)
    decision = decide_promotion(
        metrics["rmse_test"], champion_version, champion_rmse, params.promotion_margin, blocked
    )
    verdict = "promote" if decision.promote else "keep the champion"
    logger.info("Promotion decision: %s (%s)", verdict, decision.reason)

    outputs = finish_training(
        trained,
        plan,
        params.model_type,
        params.use_trip_distance,
        params.max_train_rows,
        decision,
        runner,
    )
    manifest = retrying(tasks.save_model)(
        trained.model,
        trained.vectorizer,
        metrics,
        outputs.details,
        decision.promote,
        outputs.attachments(),
        champion_version,
    )
    predictions_uri = retrying(tasks.write_predictions)(
        outputs.test_predictions, plan.test_source, manifest["version"]
    )
    result = _summary(trained, plan, decision, manifest, predictions_uri, settings.bucket, signed)
    version = result["model_version"]
    create_markdown_artifact(
        key="taxi-training-report",
        markdown=training_report(result, outputs.details, settings.object_url_template),
        description=f"Model version {version}",
    )
    create_table_artifact(
        key="taxi-training-metrics",
        table=metrics_table(result),
        description=f"RMSE of model version {version}",
    )
    logger.info(
        "Training complete: version %s, RMSE train %.4f, test %.4f",
        version,
        result["rmse_train"],
        result["rmse_test"],
    )
    return result


def _summary(
    trained: WindowTrainingResult,
    plan: WindowPlan,
    decision: PromotionDecision,
    manifest: Manifest,
    predictions_uri: str,
    bucket: str,
    signed: bool,
) -> TrainingSummary:
    """What the run returns: the version, whether it was promoted and why, its metrics, the
    months and trips used, and where it is stored."""
    version = manifest["version"]
    promotion_reason = decision.reason
    if decision.promote and not manifest["promoted"]:
        promotion_reason += "; but another training moved latest meanwhile: stored, not promoted"
    metrics = trained.metrics
    return {
        "model_version": version,
        "model_type": manifest["model_type"],
        "promoted": manifest["promoted"],
        "promotion_reason": promotion_reason,
        "champion_version": decision.champion_version,
        "champion_rmse_test": decision.champion_rmse,
        "rmse_train": metrics["rmse_train"],
        "rmse_test": metrics["rmse_test"],
        "rmse_test_course_baseline": metrics["rmse_test_course_baseline"],
        "train_months": [month_name(m) for m in plan.train_months],
        "test_month": month_name(plan.test_month) if plan.test_month else None,
        "train_rows": trained.rows_kept,
        "trained_rows": trained.rows_trained,
        "test_rows": trained.test.rows_kept,
        "manifest_uri": s3_uri(bucket, model_key(version, MANIFEST_OBJECT)),
        "plot_uri": s3_uri(bucket, model_key(version, PLOT_OBJECT)),
        "predictions_uri": predictions_uri,
        "model_signed": signed,
    }


def scheduled_date() -> date:
    """The run's scheduled start (UTC) as a date: a scheduled run replayed later still trains
    on the window of its own date. Today when there is no run context."""
    scheduled = prefect.runtime.flow_run.scheduled_start_time
    return scheduled.astimezone(UTC).date() if scheduled is not None else datetime.now(UTC).date()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run the training flow once, outside any deployment: on two files, or on the moving window."
    )
    parser.add_argument(
        "train_path", nargs="?", help="file to train on (omit both files to use the window)"
    )
    parser.add_argument("test_path", nargs="?", help="file to test on")
    parser.add_argument("--model-type", default="linear", choices=["linear", "gbm"])
    parser.add_argument("--use-trip-distance", action="store_true")
    parser.add_argument("--promotion-margin", type=float, default=0.0)
    parser.add_argument("--color", default="yellow", choices=["yellow", "green"])
    parser.add_argument(
        "--as-of", type=date.fromisoformat, help="window date, YYYY-MM-DD (default: today)"
    )
    parser.add_argument("--train-months", type=int, default=1)
    parser.add_argument("--max-train-rows", type=int, default=DEFAULT_MAX_TRAIN_ROWS)
    promote = parser.add_mutually_exclusive_group()
    promote.add_argument(
        "--promote",
        dest="promote",
        action="store_const",
        const=True,
        help="promote even a backfill",
    )
    promote.add_argument(
        "--no-promote", dest="promote", action="store_const", const=False, help="never promote"
    )
    args = parser.parse_args()
    result = training_flow(
        args.train_path,
        args.test_path,
        args.model_type,
        args.use_trip_distance,
        args.promotion_margin,
        args.color,
        args.as_of,
        args.train_months,
        args.max_train_rows,
        args.promote,
    )
    print(result)


if __name__ == "__main__":
    main()
