"""How long an inference run takes to fail when S3 is down, and how many tries it makes.

    python benchmarks/s3_outage.py                          # refused, connect-timeout
    python benchmarks/s3_outage.py --scenarios hanging      # about 9 minutes
    TAXI_IO_RETRY_DELAYS=1,2,4 python benchmarks/s3_outage.py

Runs `inference_flow` (on a local sample file, so the only S3 call of each load-model task
run is reading models/latest.json) against an S3 endpoint on loopback that:

- refused:          has nothing listening (connections refused at once);
- connect-timeout:  listens with a full accept queue, so connections time out (a host that
                    drops packets);
- hanging:          accepts connections and never answers (read timeouts).

It starts a Prefect server of its own (temporary directory, free port). For each scenario it
prints the seconds until the run ended Failed, the load-model task's runs (Prefect) and the
HTTP tries botocore made (an event hook on boto3's default session), next to the S3 part of
the bound computed from the settings: task runs x (tries x per-try timeout + backoff) + task
delays; Prefect's own work (starting the run and each task run) comes on top.
The last line is a machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402

SAMPLE = ROOT / "data" / "yellow_tripdata_2021-02.head999.csv"
# botocore's "standard" backoff between tries after a connection error: at most
# 0.05 + 0.1 + 0.2 s (taxi/storage/objects.py).
BACKOFF_BOUND = 0.35


@contextmanager
def refused() -> Iterator[str]:
    yield f"http://127.0.0.1:{devstack.free_port()}"


@contextmanager
def connect_timeout() -> Iterator[str]:
    """A listener whose accept queue (backlog 0: one connection) is full: the kernel drops
    further connection attempts, which then time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        filler.close()
        listener.close()


@contextmanager
def hanging() -> Iterator[str]:
    """Accepts every connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


SCENARIOS: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "refused": refused,
    "connect-timeout": connect_timeout,
    "hanging": hanging,
}


def per_try_timeout(scenario: str) -> float:
    from taxi.storage.objects import S3_CONNECT_TIMEOUT, S3_READ_TIMEOUT

    return {"refused": 0.0, "connect-timeout": S3_CONNECT_TIMEOUT, "hanging": S3_READ_TIMEOUT}[
        scenario
    ]


def measure(scenario: str) -> dict[str, object]:
    import boto3

    from flows.inference import inference_flow
    from taxi.settings import Settings
    from taxi.storage.objects import S3_ATTEMPTS
    from tests.integration import prefect_api as api

    tries = [0]
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "before-send.s3", lambda **_: tries.__setitem__(0, tries[0] + 1)
    )
    delays = Settings.from_env().io_retry_delays
    with SCENARIOS[scenario]() as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        started = time.monotonic()
        state = inference_flow(str(SAMPLE), return_state=True)
        seconds = time.monotonic() - started
    runs = api.task_runs(
        state.state_details.flow_run_id, "load-model", until=lambda r: r and r[0].state.is_final()
    )
    task_runs = len(delays) + 1
    bound = task_runs * (S3_ATTEMPTS * per_try_timeout(scenario) + BACKOFF_BOUND) + sum(delays)
    return {
        "scenario": scenario,
        "failed": state.is_failed(),
        "seconds": round(seconds, 1),
        "bound_seconds": round(bound, 1),
        "task_runs": runs[0].run_count if runs else None,
        "s3_tries": tries[0],
        "expected_s3_tries": task_runs * S3_ATTEMPTS,
        "retry_delays": list(delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), default=["refused", "connect-timeout"]
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="taxi-s3-outage-"))
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "outage-benchmark",
            "AWS_SECRET_ACCESS_KEY": "outage-benchmark-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TAXI_BUCKET": "outage",
            "PREFECT_HOME": str(work / "client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "CRITICAL",  # the failed runs' tracebacks are expected
        }
    )
    os.environ.setdefault("TAXI_IO_RETRY_DELAYS", "2,10,30")  # production's unless told otherwise
    server = devstack.start_prefect_server(work / "server")
    os.environ["PREFECT_API_URL"] = f"{server.url}/api"
    try:
        results = []
        for scenario in args.scenarios:
            result = measure(scenario)
            results.append(result)
            print(
                f"{scenario}: run failed after {result['seconds']} s (S3 bound {result['bound_seconds']} s + Prefect), "
                f"load-model ran {result['task_runs']} times, {result['s3_tries']} S3 tries "
                f"(expected {result['expected_s3_tries']}), task retry delays {result['retry_delays']}",
                flush=True,
            )
    finally:
        server.stop()
    print("summary " + json.dumps(results))


if __name__ == "__main__":
    main()
