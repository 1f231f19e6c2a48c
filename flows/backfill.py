"""Replaying training for past dates: one training run per date of a range, each publishing its
own model version with its metrics, none promoted to `latest` unless asked for (a past week's
model must not replace today's).

    python -m flows.backfill --start 2021-03-01 --end 2021-04-30 --color green
    python -m flows.backfill --start 2021-03-01 --end 2021-04-30 --deployment taxi-training/taxi-training

The first runs the training flow here, once per date, as subflows of one `taxi-backfill` run;
the second asks the deployment for one run per date (on its work pool) and returns at once.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.deployments import run_deployment

from flows import policy
from flows.parameters import backfill_dates, backfill_parameters
from flows.reports.training import backfill_row
from flows.training import Color, ModelType, training_flow
from taxi.config import DEFAULT_MAX_TRAIN_ROWS


@flow(name="taxi-backfill", version=policy.VERSION, log_prints=True, validate_parameters=False)
def backfill_flow(
    start: date,
    end: date,
    every_days: int = 7,
    color: Color = "yellow",
    model_type: ModelType = "linear",
    use_trip_distance: bool = False,
    train_months: int = 1,
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    promote: bool = False,
) -> list[dict[str, Any]]:
    """Run the training flow as of each date from `start` to `end`, `every_days` apart.

    Args:
        start: The first as_of date.
        end: The last possible as_of date (inclusive).
        every_days: Days between two as_of dates (7: weekly, as the schedule).
        color: Which TLC months of the bucket to train on.
        model_type: "linear" or "gbm".
        use_trip_distance: Let "gbm" use the planned trip distance.
        train_months: Months each window trains on.
        max_train_rows: Sample bound of the "gbm" model.
        promote: Let a run promote its model if it beats the champion (off: backfilled
            versions are stored, never made `latest`).

    Returns one row per date: as_of, version, months, RMSE and whether it was promoted."""
    dates = backfill_parameters(start, end, every_days).dates
    logger = get_run_logger()
    rows = []
    for as_of in dates:
        result = training_flow(
            model_type=model_type,
            use_trip_distance=use_trip_distance,
            color=color,
            as_of=as_of,
            train_months=train_months,
            max_train_rows=max_train_rows,
            promote=promote,
        )
        row = backfill_row(as_of, result)
        logger.info(
            "Backfill as of %s: version %s, test RMSE %.4f",
            row["as_of"],
            row["model_version"],
            result["rmse_test"],
        )
        rows.append(row)
    create_table_artifact(
        key="taxi-backfill", table=rows, description=f"Training replayed from {start} to {end}"
    )
    return rows


def trigger_deployment_runs(
    deployment: str, dates: list[date], parameters: dict[str, Any]
) -> list[str]:
    """One run of `deployment` per date, as_of set, without waiting for them: their ids."""
    runs = [
        run_deployment(
            deployment,
            parameters={**parameters, "as_of": as_of.isoformat()},
            timeout=0,
            as_subflow=False,
        )
        for as_of in dates
    ]
    return [str(run.id) for run in runs]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Replay training for past dates (see flows/backfill.py)."
    )
    parser.add_argument(
        "--start", required=True, type=date.fromisoformat, help="first as_of date, YYYY-MM-DD"
    )
    parser.add_argument(
        "--end", required=True, type=date.fromisoformat, help="last as_of date, YYYY-MM-DD"
    )
    parser.add_argument("--every-days", type=int, default=7)
    parser.add_argument("--color", default="yellow", choices=["yellow", "green"])
    parser.add_argument("--model-type", default="linear", choices=["linear", "gbm"])
    parser.add_argument("--use-trip-distance", action="store_true")
    parser.add_argument("--train-months", type=int, default=1)
    parser.add_argument("--max-train-rows", type=int, default=DEFAULT_MAX_TRAIN_ROWS)
    parser.add_argument(
        "--promote", action="store_true", help="let backfilled versions become latest if better"
    )
    parser.add_argument(
        "--deployment",
        help="run through this deployment (e.g. taxi-training/taxi-training) instead",
    )
    args = parser.parse_args()
    if args.deployment:
        dates = backfill_dates(args.start, args.end, args.every_days)
        parameters = {
            "color": args.color,
            "model_type": args.model_type,
            "use_trip_distance": args.use_trip_distance,
            "train_months": args.train_months,
            "max_train_rows": args.max_train_rows,
            "promote": args.promote,
        }
        for as_of, run_id in zip(
            dates, trigger_deployment_runs(args.deployment, dates, parameters), strict=True
        ):
            print(f"as_of {as_of}: flow run {run_id}")
        return
    rows = backfill_flow(
        args.start,
        args.end,
        args.every_days,
        args.color,
        args.model_type,
        args.use_trip_distance,
        args.train_months,
        args.max_train_rows,
        args.promote,
    )
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
