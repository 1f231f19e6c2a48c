"""Peak memory of the deployed flows on a file at the row cap, against the flow containers' limit.

    python benchmarks/row_cap.py                  # TAXI_MAX_ROWS trips (default 5,000,000)
    python benchmarks/row_cap.py --rows 4000000

Builds one file of `--rows` trips (default: the row cap, TAXI_MAX_ROWS or its default) by
concatenating the real green 2021-01/02/03 trips of data/ (224,917 trips, all columns) again
and again, written as the TLC writes a month (parquet, snappy). Also the densest CSV the caps
let through: the same trips, only the columns the pipeline reads, gzipped, at most `--rows` of
them and at most the byte cap (TAXI_DOWNLOAD_MAX_BYTES) decompressed. Like benchmarks/hourly_inference.py it
starts its own S3 server (SeaweedFS) and Prefect server on free loopback ports in a temporary
folder, puts the files in the bucket, then runs each flow in a fresh Python process, as a
flow container does:

- training: `training_flow(file, file, model_type)`, train and test month both at the cap,
  for "gbm" (the deployed model) and "linear";
- predicting: the hourly job, `incoming_inference_flow`, over the file alone under a prefix,
  with the gbm model that training published as `latest`.

Peak memory is each process's peak resident set size (`VmHWM`: interpreter, Prefect
engine and libraries included), compared with the flow containers' default `mem_limit`
(deploy/work_pool.py). The last line is a machine-readable summary.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hourly_inference import ROOT, start_servers

sys.path.insert(0, str(ROOT))  # this tree's taxi, for the files and the bucket

DATA = ROOT / "data"
GREEN = [DATA / f"green_tripdata_2021-{month}.parquet" for month in ("01", "02", "03")]
# Where the parquet file's trips say they are from; the CSV's under another name.
PARQUET_KEY = "data/green/green_tripdata_2030-01.parquet"
CSV_KEY = "data/green/green_tripdata_2030-01.csv.gz"
LIMIT_GIB = 4  # deploy.work_pool.DEFAULT_MEM_LIMIT, "4g"

# Run in a fresh process per measurement; prints its own peak RSS last.
RUN_ONE = """
import json, sys, time
start = time.perf_counter()
kind, *args = sys.argv[1:]
if kind == "train":
    from flows.training import training_flow
    summary = training_flow(args[0], args[0], model_type=args[1], color="green")
    detail = {"trained_rows": summary["trained_rows"], "test_rows": summary["test_rows"]}
else:
    from flows.inference import incoming_inference_flow
    summary = incoming_inference_flow(args[0])
    detail = {"predicted": len(summary["predicted"]), "failed": [f["error"] for f in summary["failed"]]}
# VmHWM, not ru_maxrss: that outlives exec and would be the parent's (which built the files).
with open("/proc/self/status") as status:
    peak_mb = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_mb, **detail}))
"""


def build_files(work: Path, rows: int, max_bytes: int) -> tuple[Path, Path, int]:
    """The parquet file of `rows` trips, and the gzipped CSV of as many of the same trips'
    used columns as fit in `max_bytes` decompressed (at most `rows`), and its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = pa.concat_tables([pq.read_table(path) for path in GREEN])
    # Concatenating a table with itself copies nothing: only the file holds every row.
    trips = pa.concat_tables([real] * -(-rows // len(real))).slice(0, rows)
    parquet = work / "cap.parquet"
    pq.write_table(trips, parquet, compression="snappy")
    csv = work / "cap.csv.gz"
    csv_rows = rows
    while (size := write_csv(trips.slice(0, csv_rows), csv)) > max_bytes:
        csv_rows = int(csv_rows * max_bytes / size * 0.999)
    return parquet, csv, csv_rows


def write_csv(trips, path: Path) -> int:
    """Writes the columns the pipeline reads as a gzipped CSV; returns its decompressed bytes."""
    import pyarrow.csv as pacsv

    from taxi.tlc import NUMERIC_COLUMNS

    used = trips.select(["lpep_pickup_datetime", "lpep_dropoff_datetime", *NUMERIC_COLUMNS])
    with gzip.open(path, "wb", compresslevel=6) as out:
        pacsv.write_csv(used, out)
    size = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
    return size


def declared(parquet: Path, csv: Path) -> dict[str, int]:
    """What the caps are checked against: the parquet footer's rows and uncompressed bytes,
    the CSV's decompressed bytes."""
    import pyarrow.parquet as pq

    footer = pq.read_metadata(parquet)
    csv_bytes = 0
    with gzip.open(csv, "rb") as stream:
        while chunk := stream.read(1 << 20):
            csv_bytes += len(chunk)
    return {
        "rows": footer.num_rows,
        "parquet_bytes": parquet.stat().st_size,
        "parquet_uncompressed": sum(
            footer.row_group(i).total_byte_size for i in range(footer.num_row_groups)
        ),
        "csv_gz_bytes": csv.stat().st_size,
        "csv_bytes": csv_bytes,
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def measure(kind: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", RUN_ONE, kind, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {args} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, help="trips in the file (default: the row cap)")
    args = parser.parse_args()
    from taxi.settings import Settings
    from taxi.storage.objects import ObjectStore

    settings = Settings.from_env()
    rows = args.rows or settings.max_rows
    limit_mb = LIMIT_GIB * 1024
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"caps: {settings.max_rows:,} rows, {settings.download_max_bytes:,} bytes decompressed")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="taxi-row-cap-bench-") as work:
        parquet, csv, csv_rows = build_files(Path(work), rows, settings.download_max_bytes)
        sizes = declared(parquet, csv)
        print(
            f"parquet: {rows:,} trips (green 2021-01/02/03 repeated), {sizes['parquet_bytes']:,} bytes, "
            f"{sizes['parquet_uncompressed']:,} uncompressed"
        )
        print(
            f"csv.gz: {csv_rows:,} of those trips, the columns used, {sizes['csv_gz_bytes']:,} bytes, "
            f"{sizes['csv_bytes']:,} decompressed"
        )
        servers = start_servers(Path(work))
        try:
            store = ObjectStore()
            store.ensure_bucket()
            for key, path in ((PARQUET_KEY, parquet), (CSV_KEY, csv)):
                store.put_file_verified(key, path, sha256_file(path))
            for model_type in ("linear", "gbm"):  # gbm last: `latest` for the predictions
                results[f"train {model_type}, parquet"] = measure(
                    "train", store.uri(PARQUET_KEY), model_type
                )
            results["train gbm, csv.gz"] = measure("train", store.uri(CSV_KEY), "gbm")
            for name, key in (("parquet", PARQUET_KEY), ("csv.gz", CSV_KEY)):
                prefix = f"incoming/{name.replace('.', '-')}/"
                path = parquet if name == "parquet" else csv
                store.put_file_verified(f"{prefix}{Path(key).name}", path, sha256_file(path))
                results[f"hourly predict, {name}"] = measure("predict", prefix)
        finally:
            for server in servers:
                server.stop()

    print()
    print(f"{'flow, file':28}{'seconds':>10}{'peak MB':>10}{'of 4 GiB':>10}")
    for name, r in results.items():
        print(
            f"{name:28}{r['seconds']:>10.1f}{r['peak_mb']:>10.0f}{r['peak_mb'] / limit_mb:>10.0%}"
        )
    for name, r in results.items():
        if r.get("failed"):
            print(f"{name}: failed: {r['failed']}")
    peak = max(r["peak_mb"] for r in results.values())
    train_peak = max(r["peak_mb"] for n, r in results.items() if n.startswith("train"))
    predict_peak = max(r["peak_mb"] for n, r in results.items() if n.startswith("hourly"))
    fits = peak < limit_mb and all(r.get("predicted", 1) == 1 for r in results.values())
    print(
        f"summary rows={rows} csv_rows={csv_rows} train_peak_mb={train_peak:.0f} predict_peak_mb={predict_peak:.0f} "
        f"limit_mb={limit_mb} peak_of_limit={peak / limit_mb:.2f} fits={str(fits).lower()}"
    )


if __name__ == "__main__":
    main()
