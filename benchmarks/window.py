"""Training on a 12-month window: seconds and peak memory of both model types.

    python benchmarks/window.py                # 12 training months + 1 test month, resampled

Each month has 1,369,769 trips (the size of yellow 2021-01), resampled with a fixed seed per
month from the real yellow trips shipped in data/ (see benchmark.py's build_month), with the
pickup and dropoff times moved into that month. The files are written once to a temporary
folder; each model type then trains in a fresh process through the project's window entrypoint,
taxi.pipeline.run_window_training: the linear model folds the months into its normal equations
one at a time, the gradient-boosting model trains on a uniform sample of at most
DEFAULT_MAX_TRAIN_ROWS trips of the window. Seconds are timed inside the process from the first
read to the test RMSE; peak memory is the process's peak resident set size. The last line is a
machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark import DATA, MONTH_ROWS, SEED, build_month, peak_rss_mb

WINDOW_MONTHS = 12
SAMPLES = [DATA / "yellow_tripdata_2021-01.head28401.csv"]


def build_window(work_dir: Path, months: int, rows: int) -> list[Path]:
    """`months` training files and one test file, each month's trips moved into that month."""
    import pandas as pd

    paths = []
    for index in range(months + 1):
        path = work_dir / f"yellow_tripdata_{2022 + index // 12}-{index % 12 + 1:02d}.parquet"
        build_month(SAMPLES, rows, SEED + index, path)
        trips = pd.read_parquet(path)
        shift = pd.Timestamp(2022 + index // 12, index % 12 + 1, 1) - pd.Timestamp(2021, 1, 1)
        for column in ("tpep_pickup_datetime", "tpep_dropoff_datetime"):
            trips[column] = trips[column] + shift
        trips.to_parquet(path, index=False)
        paths.append(path)
    return paths


def run_window(model_type: str, *paths: str) -> dict:
    from taxi.pipeline import run_window_training

    start = time.perf_counter()
    result = run_window_training(list(paths[:-1]), paths[-1], model_type)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": peak_rss_mb(),
        "rows_kept": result.rows_kept,
        "rows_trained": result.rows_trained,
        "rmse_train": result.rmse_train,
        "rmse_test": result.rmse_test,
    }


def measure(model_type: str, paths: list[Path]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", model_type, *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--months", type=int, default=WINDOW_MONTHS, help="training months in the window"
    )
    parser.add_argument("--rows", type=int, default=MONTH_ROWS, help="trips per resampled month")
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(run_window(*args.measure)))
        return

    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"window: {args.months} training months + 1 test month of {args.rows:,} trips each, resampled"
    )
    with tempfile.TemporaryDirectory(prefix="taxi-window-benchmark-") as work:
        paths = build_window(Path(work), args.months, args.rows)
        results = {model_type: measure(model_type, paths) for model_type in ("linear", "gbm")}
    print()
    print(
        f"{'model':8}{'seconds':>10}{'peak MB':>10}{'trips kept':>14}{'trained on':>14}{'RMSE train':>12}{'RMSE test':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:8}{r['seconds']:>10.1f}{r['peak_mb']:>10.0f}{r['rows_kept']:>14,}{r['rows_trained']:>14,}"
            f"{r['rmse_train']:>12.4f}{r['rmse_test']:>11.4f}"
        )
    linear, gbm = results["linear"], results["gbm"]
    print(
        f"summary window_months={args.months} linear_peak_mb={linear['peak_mb']:.0f} "
        f"linear_seconds={linear['seconds']:.1f} gbm_peak_mb={gbm['peak_mb']:.0f} gbm_seconds={gbm['seconds']:.1f}"
    )


if __name__ == "__main__":
    main()
