"""The hourly inference job over one sample file: import time and the flow's own seconds.

    python benchmarks/hourly_inference.py                 # 3 measured runs, 100 records of history

What a deployment run of `taxi-inference` does after its container starts, without Docker:
this script starts its own S3 server (SeaweedFS) and Prefect server on free loopback ports in
a temporary folder (scripts/devstack.py), ingests the green 2021 samples of data/, trains and
publishes a gbm model on January (tested on February) with the training flow, and writes
`--history` monitoring records, as many as a job that has run for days leaves behind. Each
measured run then puts green 2021-03 (83,827 trips) under a prefix of its own and runs
`incoming_inference_flow` on it in a fresh Python process, as a flow container does, which
times itself:

- imports: `import flows.inference` (the flow module with Prefect, pandas, the model code);
- flow itself: the flow call, from just before it to just after it returns (and the CPU
  seconds of the process meanwhile, steadier than wall seconds on a busy machine).

Where the flow's seconds went comes from the Prefect API: task run durations by task name, and
the subflows' (each includes its own tasks). A separate measure of the imports
is `python -X importtime -c "import flows.inference"` (cumulative, median of --runs). The
last line is a machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SAMPLE = "green_tripdata_2021-03.parquet"
# Task runs that stand for a subflow run in its parent (Prefect 3 names them after the flow).
SUBFLOWS = ("taxi-inference-0", "process-inference-data-0")
sys.path.insert(0, str(ROOT / "scripts"))

# Run in a fresh process per measurement: what a flow container does after it starts.
RUN_ONE = """
import json, sys, time
start, start_cpu = time.perf_counter(), time.process_time()
from flows.inference import incoming_inference_flow
imported, imported_cpu = time.perf_counter(), time.process_time()
state = incoming_inference_flow(sys.argv[1], return_state=True)
summary = state.result()
done, done_cpu = time.perf_counter(), time.process_time()
print(json.dumps({"imports": imported - start, "flow": done - imported, "flow_cpu": done_cpu - imported_cpu,
                  "flow_run_id": str(state.state_details.flow_run_id), "predicted": len(summary["predicted"])}))
"""


def start_servers(work: Path) -> list:
    """Both servers, and the environment every process of this benchmark uses."""
    import devstack

    access_key, secret_key = "bench-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    s3 = devstack.start_s3_server(work / "s3", access_key, secret_key)
    prefect = devstack.start_prefect_server(work / "prefect-server")
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": s3.url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "TAXI_BUCKET": "taxi-bench",
            "PREFECT_API_URL": f"{prefect.url}/api",
            "PREFECT_HOME": str(work / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # A throwaway key: models are signed and checked, as deployed (a key is required).
            "TAXI_SIGNING_KEY": secrets.token_hex(32),
        }
    )
    for variable in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "TAXI_SIGNING_KEY_BLOCK",
        "TAXI_ALLOW_UNSIGNED",
    ):
        os.environ.pop(variable, None)
    return [prefect, s3]


def prepare_bucket(history: int) -> str:
    """Seed the bucket, publish a gbm model, and write `history` monitoring records; returns
    the model version."""
    from flows.training import training_flow
    from taxi.layout import data_key, monitoring_record_key
    from taxi.months import parse_month
    from taxi.seed import seed_bucket
    from taxi.storage.objects import ObjectStore

    store = ObjectStore()
    seed_bucket(DATA, store, incoming=())
    jan, feb = (store.uri(data_key("green", parse_month(m))) for m in ("2021-01", "2021-02"))
    version = training_flow(jan, feb, model_type="gbm", color="green")["model_version"]
    record = {
        "input": "",
        "model_version": version,
        "rows": 0,
        "realized_rmse": 6.0,
        "drift_detected": False,
        "drift_statistics": "computed",
        "features": {},
        "predictions": None,
        "target": None,
    }
    for i in range(history):
        record["input"] = store.uri(f"incoming/history/{i:03d}/green.parquet")
        key = monitoring_record_key(f"predictions/incoming/history/{i:03d}/green/{version}.parquet")
        store.put(key, json.dumps(record).encode(), "application/json")
    return version


def measure_run(prefix: str, code: Path = ROOT) -> dict:
    """One run over the sample put under `prefix`, with the flows of the source tree `code`."""
    from taxi.storage.objects import ObjectStore

    store = ObjectStore()
    store.put(f"{prefix}{SAMPLE}", (DATA / SAMPLE).read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", RUN_ONE, prefix],
        capture_output=True,
        text=True,
        cwd=code,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the run over {prefix} failed:\n{result.stderr[-4000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if measured["predicted"] != 1:
        raise RuntimeError(
            f"the run over {prefix} predicted {measured['predicted']} files, expected 1"
        )
    time.sleep(2)  # the server records task runs from events, a moment after the run ends
    measured["tasks"] = task_seconds(measured["flow_run_id"])
    return measured


def task_seconds(flow_run_id: str) -> dict[str, float]:
    """Seconds per task name in the flow run and its subflows (this server runs nothing else)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        during = TaskRunFilter(
            start_time=TaskRunFilterStartTime(after_=run.start_time, before_=run.end_time)
        )
        seconds: dict[str, float] = defaultdict(float)
        for task_run in client.read_task_runs(task_run_filter=during):
            if task_run.start_time and task_run.end_time:
                name = re.sub(r"-[0-9a-f]{3}$", "", task_run.name)
                name = f"subflow {name.removesuffix('-0')}" if name in SUBFLOWS else f"task {name}"
                seconds[name] += (task_run.end_time - task_run.start_time).total_seconds()
    return dict(seconds)


def import_seconds() -> float:
    """Cumulative seconds of `import flows.inference` by python -X importtime (stderr)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flows.inference"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    for line in result.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "flows.inference":
            return int(fields[1]) / 1e6
    raise RuntimeError("flows.inference not in the -X importtime output")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--history", type=int, default=100, help="monitoring records already in the bucket"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taxi-hourly-bench-") as work:
        servers = start_servers(Path(work))
        try:
            version = prepare_bucket(args.history)
            print(
                f"model {version} (gbm), {args.history} monitoring records of history, sample {SAMPLE}"
            )
            measure_run("incoming/warmup/")  # the Prefect server's first flow run is slower
            runs = [measure_run(f"incoming/run{i}/") for i in range(1, args.runs + 1)]
        finally:
            for server in servers:
                server.stop()
    importtimes = [import_seconds() for _ in range(args.runs)]

    names = sorted(
        {name for run in runs for name in run["tasks"]},
        key=lambda n: -statistics.median(r["tasks"].get(n, 0) for r in runs),
    )
    print(
        f"{'seconds':<32}"
        + "".join(f"{'run ' + str(i + 1):>8}" for i in range(args.runs))
        + f"{'median':>8}"
    )
    rows = [
        ("imports (in the run process)", [r["imports"] for r in runs]),
        ("flow itself", [r["flow"] for r in runs]),
    ]
    rows += [("flow itself, CPU seconds", [r["flow_cpu"] for r in runs])]
    rows += [(f"  {name}", [r["tasks"].get(name, 0.0) for r in runs]) for name in names]
    for label, values in rows:
        print(
            f"{label:<32}"
            + "".join(f"{v:8.2f}" for v in values)
            + f"{statistics.median(values):8.2f}"
        )
    print(
        f"python -X importtime, import flows.inference (cumulative): {', '.join(f'{s:.2f}' for s in importtimes)} s"
    )
    imports, flow = (
        statistics.median(r["imports"] for r in runs),
        statistics.median(r["flow"] for r in runs),
    )
    flow_cpu = statistics.median(r["flow_cpu"] for r in runs)
    print(
        f"summary runs={args.runs} history={args.history} imports_s={imports:.2f} flow_s={flow:.2f} flow_cpu_s={flow_cpu:.2f} "
        f"imports_plus_flow_s={statistics.median(r['imports'] + r['flow'] for r in runs):.2f} "
        f"importtime_s={statistics.median(importtimes):.2f}"
    )


if __name__ == "__main__":
    main()
