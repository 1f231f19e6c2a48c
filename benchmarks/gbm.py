"""Speed, memory and quality of the deployed gradient-boosting model ("gbm") against its
previous configuration.

    python benchmarks/gbm.py

Inputs are those of benchmarks/benchmark.py: two months of 1,369,769 trips (the size of
yellow 2021-01) resampled with a fixed seed from the real yellow trips in data/. Each
measurement runs in a fresh process on the same input, for two configurations:

- baseline: the gbm model as it was, frozen in benchmarks/gbm_baseline.py (the previous
            TripFeatureEncoder, float64 features, HistGradientBoostingRegressor with 600 trees);
- new:      this project's gbm model, taxi.run_training(..., model_type="gbm") and
            taxi.run_inference.

It reports training seconds (load, process, train, evaluate on both months) and peak memory,
inference trips per second and peak memory (peak resident set size of the whole process),
and the test RMSE on the real green 2021-02 and 2021-03 months after training on green
2021-01 (data/). The last line is a machine-readable summary.

The resampled test month repeats its 1,998 source trips, so its zone pairs and times are few.
The gbm model's lookup tables are filled at training for the zone pairs seen there and, for
other keys, when first met (taxi.gbm_tables): a month with the variety of real trips costs
more. So inference is also measured on a month of 1,369,769 trips resampled from the 148,399
real trips of green 2021-02 and 2021-03 (about 9% of them on zone pairs that green 2021-01 never
saw), with the models trained on green 2021-01: a line of its own, not in the summary.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmark import DATA, MONTH_ROWS, SEED, build_month, measure, peak_rss_mb, run_inference

CONFIGS = ("baseline", "new")
GREEN = {month: str(DATA / f"green_tripdata_2021-{month}.parquet") for month in ("01", "02", "03")}


def train(config: str, train_file: str, test_file: str) -> tuple:
    """(model, vectorizer, rmse_train, rmse_test, trips) of one training run."""
    import taxi

    if config == "new":
        result = taxi.run_training(train_file, test_file, model_type="gbm")
        return (
            result.model,
            result.vectorizer,
            result.rmse_train,
            result.rmse_test,
            result.train.rows_kept + result.test.rows_kept,
        )
    from gbm_baseline import TripFeatureEncoder, train_baseline_model

    train_data = taxi.process_train_data(train_file, TripFeatureEncoder())
    model = train_baseline_model(train_data.X, train_data.y)
    test_data = taxi.process_train_data(test_file, train_data.vectorizer)
    rmse_train = taxi.evaluate_model(model, train_data.X, train_data.y)
    rmse_test = taxi.evaluate_model(model, test_data.X, test_data.y)
    return (
        model,
        train_data.vectorizer,
        rmse_train,
        rmse_test,
        train_data.rows_kept + test_data.rows_kept,
    )


def run_train(config: str, train_file: str, test_file: str, model_path: str) -> dict:
    start = time.perf_counter()
    model, vectorizer, rmse_train, rmse_test, rows = train(config, train_file, test_file)
    seconds = time.perf_counter() - start
    with open(model_path, "wb") as f:
        pickle.dump((model, vectorizer), f)
    return {
        "seconds": seconds,
        "peak_mb": peak_rss_mb(),
        "rows": rows,
        "rmse_train": rmse_train,
        "rmse_test": rmse_test,
    }


def run_quality(config: str, model_path: str) -> dict:
    """Test RMSE on the real green 2021-02 and 2021-03 months, trained on green 2021-01 (the
    model is saved to `model_path`)."""
    import taxi

    model, vectorizer, _, rmse_02, _ = train(config, GREEN["01"], GREEN["02"])
    with open(model_path, "wb") as f:
        pickle.dump((model, vectorizer), f)
    march = taxi.process_train_data(GREEN["03"], vectorizer)
    return {"rmse_02": rmse_02, "rmse_03": taxi.evaluate_model(model, march.X, march.y)}


def build_green_month(rows: int, seed: int, path: Path) -> None:
    """`rows` trips resampled from the real green 2021-02 and 2021-03 months, as TLC parquet."""
    import numpy as np
    import pandas as pd

    trips = pd.concat([pd.read_parquet(GREEN[month]) for month in ("02", "03")], ignore_index=True)
    rng = np.random.default_rng(seed)
    trips.iloc[rng.integers(0, len(trips), rows)].reset_index(drop=True).to_parquet(
        path, index=False
    )


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        kind, *args = sys.argv[2:]
        runner = {"train": run_train, "inference": run_inference, "quality": run_quality}[kind]
        print(json.dumps(runner(*args)))
        return

    figures: dict[str, dict] = {config: {} for config in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="taxi-gbm-benchmark-") as work:
        train_file, test_file = str(Path(work) / "train.parquet"), str(Path(work) / "test.parquet")
        build_month(
            [DATA / "yellow_tripdata_2021-01.head28401.csv"], MONTH_ROWS, SEED, Path(train_file)
        )
        samples = [
            DATA / "yellow_tripdata_2021-02.head999.csv",
            DATA / "yellow_tripdata_2021-03.head999.csv",
        ]
        build_month(samples, MONTH_ROWS, SEED + 1, Path(test_file))
        green_file = str(Path(work) / "green.parquet")
        build_green_month(MONTH_ROWS, SEED + 2, Path(green_file))
        print(
            f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(
            f"train/test: {MONTH_ROWS:,} trips each, resampled from the yellow 2021-01 and 2021-02/03 samples"
        )
        for config in CONFIGS:
            model_path = str(Path(work) / f"{config}.pkl")
            figures[config]["train"] = measure(
                "train", config, train_file, test_file, model_path, script=__file__
            )
            figures[config]["inference"] = measure(
                "inference", test_file, model_path, script=__file__
            )
            green_model_path = str(Path(work) / f"{config}-green.pkl")
            figures[config]["quality"] = measure(
                "quality", config, green_model_path, script=__file__
            )
            figures[config]["green inference"] = measure(
                "inference", green_file, green_model_path, script=__file__
            )

    print()
    print(
        f"{'':10}{'train s':>9}{'train MB':>10}{'RMSE month':>12}{'infer s':>9}{'infer MB':>10}{'trips/s':>12}{'green 02':>10}{'green 03':>10}"
    )
    for config in CONFIGS:
        t, i, q = figures[config]["train"], figures[config]["inference"], figures[config]["quality"]
        print(
            f"{config:10}{t['seconds']:>9.2f}{t['peak_mb']:>10.0f}{t['rmse_test']:>12.4f}{i['seconds']:>9.2f}{i['peak_mb']:>10.0f}"
            f"{i['rows'] / i['seconds']:>12,.0f}{q['rmse_02']:>10.4f}{q['rmse_03']:>10.4f}"
        )
    base, new = figures["baseline"], figures["new"]
    train_speedup = base["train"]["seconds"] / new["train"]["seconds"]
    inference_speedup = base["inference"]["seconds"] / new["inference"]["seconds"]
    rows_per_s = new["inference"]["rows"] / new["inference"]["seconds"]
    base_green, new_green = base["green inference"]["seconds"], new["green inference"]["seconds"]
    print(
        f"\ninference on {MONTH_ROWS:,} trips resampled from the real green 2021-02/03 trips, models trained on green "
        f"2021-01: baseline {base_green:.2f} s, new {new_green:.2f} s ({new['green inference']['peak_mb']:.0f} MB), "
        f"{base_green / new_green:.1f}x faster"
    )
    print()
    print(
        f"training: {train_speedup:.1f}x faster than the baseline, peak {new['train']['peak_mb']:.0f} MB"
    )
    print(
        f"inference: {inference_speedup:.1f}x faster than the baseline, {rows_per_s:,.0f} trips per second"
    )
    print(
        f"summary gbm_train_speedup={train_speedup:.2f} gbm_inference_speedup={inference_speedup:.2f} "
        f"gbm_train_peak_mb={new['train']['peak_mb']:.0f} gbm_inference_rows_per_s={rows_per_s:.0f} "
        f"gbm_rmse_02={new['quality']['rmse_02']:.4f} gbm_rmse_03={new['quality']['rmse_03']:.4f}"
    )


if __name__ == "__main__":
    main()
