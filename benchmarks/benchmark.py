"""Training and inference speed and memory against the course implementation.

    python benchmarks/benchmark.py                       # a yellow 2021-01-sized month, resampled
    python benchmarks/benchmark.py --train-file yellow_tripdata_2021-01.parquet \\
                                   --test-file yellow_tripdata_2021-02.parquet

Without files, it builds two inputs of 1,369,769 trips (the size of yellow 2021-01) by
resampling, with a fixed seed, the real yellow trips shipped in data/: January's sample for
training, February's and March's for the test month. Each measurement then runs in a fresh
process on the same input:

- baseline:  the course notebook (read the parquet, duration, 1-60 min filter, categories as
             strings, one dict per trip, DictVectorizer, LinearRegression, RMSE on the test month);
- train:     this project's training entrypoint, taxi.run_training (same model);
- inference: this project's inference entrypoint, taxi.run_inference, on the test month.

Seconds are timed inside each process from just before loading the data to just after the last
step; peak memory is the process's peak resident set size (interpreter and libraries included,
the same for all three). The last line is a machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
MONTH_ROWS = 1_369_769  # trips in the TLC's yellow 2021-01 file
SEED = 20210101


# --- inputs --------------------------------------------------------------------------------


def build_month(samples: list[Path], rows: int, seed: int, path: Path) -> None:
    """Resample real trips to `rows` trips, written with the TLC's parquet column types."""
    import numpy as np
    import pandas as pd

    trips = pd.concat([pd.read_csv(p) for p in samples], ignore_index=True)
    rng = np.random.default_rng(seed)
    month = trips.iloc[rng.integers(0, len(trips), rows)].reset_index(drop=True)
    for column in ("tpep_pickup_datetime", "tpep_dropoff_datetime"):
        month[column] = pd.to_datetime(month[column]).astype("datetime64[us]")
    for column in ("passenger_count", "RatecodeID", "trip_distance", "congestion_surcharge"):
        month[column] = month[column].astype("float64")
    month.to_parquet(path, index=False)


# --- the three measurements, each run in its own process ----------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size. Linux's VmHWM is the address space's, which exec
    starts anew; ru_maxrss outlives exec, so a process started by a larger one (the benchmarks'
    parent, which built the months) would report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_baseline(train_file: str, test_file: str) -> dict:
    """The course notebook's code path, kept as it was written there."""
    import pandas as pd
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import root_mean_squared_error

    categorical = ["PULocationID", "DOLocationID", "passenger_count"]

    def read_dataframe(filename: str) -> pd.DataFrame:
        df = pd.read_parquet(filename)
        pickup = "tpep_pickup_datetime" if "tpep_pickup_datetime" in df else "lpep_pickup_datetime"
        dropoff = pickup.replace("pickup", "dropoff")
        df["duration"] = (df[dropoff] - df[pickup]).dt.total_seconds() / 60
        df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
        df[categorical] = df[categorical].fillna(-1).astype(int).astype(str)
        return df

    start = time.perf_counter()
    df_train = read_dataframe(train_file)
    df_val = read_dataframe(test_file)
    dv = DictVectorizer()
    X_train = dv.fit_transform(df_train[categorical].to_dict(orient="records"))
    X_val = dv.transform(df_val[categorical].to_dict(orient="records"))
    y_train = df_train["duration"].values
    y_val = df_val["duration"].values
    lr = LinearRegression()
    lr.fit(X_train, y_train)
    rmse_train = root_mean_squared_error(y_train, lr.predict(X_train))
    rmse_test = root_mean_squared_error(y_val, lr.predict(X_val))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": peak_rss_mb(),
        "rows": len(df_train) + len(df_val),
        "rmse_train": rmse_train,
        "rmse_test": rmse_test,
    }


def run_train(train_file: str, test_file: str, model_path: str) -> dict:
    import taxi

    start = time.perf_counter()
    result = taxi.run_training(train_file, test_file)
    seconds = time.perf_counter() - start
    with open(model_path, "wb") as f:
        pickle.dump((result.model, result.vectorizer), f)
    return {
        "seconds": seconds,
        "peak_mb": peak_rss_mb(),
        "rows": result.train.rows_kept + result.test.rows_kept,
        "rmse_train": result.rmse_train,
        "rmse_test": result.rmse_test,
    }


def run_inference(test_file: str, model_path: str) -> dict:
    import taxi

    with open(model_path, "rb") as f:
        model, vectorizer = pickle.load(f)
    start = time.perf_counter()
    predictions = taxi.run_inference(test_file, model, vectorizer)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "rows": len(predictions)}


def measure(kind: str, *args: str, script: str = __file__) -> dict:
    """Run one measurement in a fresh interpreter (`script --measure kind args...`) and return
    the JSON it prints last."""
    output = subprocess.run(
        [sys.executable, script, "--measure", kind, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--train-file", help="a real TLC month to train on (default: resampled yellow 2021-01)"
    )
    parser.add_argument(
        "--test-file", help="a real TLC month to test and predict on (default: resampled)"
    )
    parser.add_argument("--rows", type=int, default=MONTH_ROWS, help="trips per resampled month")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        kind, *rest = args.measure
        runner = {"baseline": run_baseline, "train": run_train, "inference": run_inference}[kind]
        print(json.dumps(runner(*rest)))
        return

    with tempfile.TemporaryDirectory(prefix="taxi-benchmark-") as work:
        work_dir = Path(work)
        train_file, test_file = args.train_file, args.test_file
        if not train_file:
            train_file = str(work_dir / "train.parquet")
            build_month(
                [DATA / "yellow_tripdata_2021-01.head28401.csv"],
                args.rows,
                args.seed,
                Path(train_file),
            )
        if not test_file:
            test_file = str(work_dir / "test.parquet")
            samples = [
                DATA / "yellow_tripdata_2021-02.head999.csv",
                DATA / "yellow_tripdata_2021-03.head999.csv",
            ]
            build_month(samples, args.rows, args.seed + 1, Path(test_file))
        model_path = str(work_dir / "model.pkl")

        print(
            f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(
            f"train: {args.train_file or f'{args.rows:,} trips resampled from the yellow 2021-01 sample'}"
        )
        print(
            f"test:  {args.test_file or f'{args.rows:,} trips resampled from the yellow 2021-02/03 samples'}"
        )
        baseline = measure("baseline", train_file, test_file)
        train = measure("train", train_file, test_file, model_path)
        inference = measure("inference", test_file, model_path)

    speedup = baseline["seconds"] / train["seconds"]
    memory_ratio = train["peak_mb"] / baseline["peak_mb"]
    rows_per_s = inference["rows"] / inference["seconds"]
    rmse_diff = max(
        abs(baseline["rmse_test"] - train["rmse_test"]),
        abs(baseline["rmse_train"] - train["rmse_train"]),
    )
    print()
    print(f"{'':28}{'seconds':>10}{'peak MB':>10}{'rows/s':>14}{'RMSE train':>12}{'RMSE test':>11}")
    for name, figures in (
        ("course baseline (train)", baseline),
        ("project training", train),
        ("project inference", inference),
    ):
        rmse = (
            f"{figures['rmse_train']:>12.4f}{figures['rmse_test']:>11.4f}"
            if "rmse_test" in figures
            else ""
        )
        print(
            f"{name:28}{figures['seconds']:>10.2f}{figures['peak_mb']:>10.0f}{figures['rows'] / figures['seconds']:>14,.0f}{rmse}"
        )
    print()
    print(
        f"training: {speedup:.1f}x faster than the baseline, peak memory {memory_ratio:.2f}x the baseline's"
    )
    print(
        f"inference: {rows_per_s:,.0f} trips per second ({inference['rows']:,} trips in {inference['seconds']:.2f} s)"
    )
    print(f"RMSE difference project vs baseline: {rmse_diff:.6f}")
    print(
        f"summary train_speedup={speedup:.2f} train_memory_ratio={memory_ratio:.3f} "
        f"inference_rows_per_s={rows_per_s:.0f} rmse_diff={rmse_diff:.6f}"
    )


if __name__ == "__main__":
    main()
