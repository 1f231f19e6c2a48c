"""The S3 server unreachable for a whole run, or going away in the middle of one and coming back,
through the flows on the real Prefect server and a real S3 server of the test's own.

A new test of an S3 server that is down, restarts or drops connections belongs here; how many
times each kind of failure is tried is counted in test_retries.py.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import devstack
from taxi.settings import Settings
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelRegistry
from tests.integration import prefect_api as api
from tests.integration.faults.runs import failed
from tests.paths import YELLOW_FEB, YELLOW_JAN


def test_a_dead_s3_endpoint_fails_the_run_in_bounded_time(prefect_api, monkeypatch):
    from flows.inference import inference_flow

    dead = f"http://127.0.0.1:{devstack.free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    retry_delays = Settings.from_env().io_retry_delays
    started = time.monotonic()
    state = inference_flow(str(YELLOW_FEB), return_state=True)
    elapsed = time.monotonic() - started
    print(
        f"dead S3 endpoint failed the run after {elapsed:.1f} s (retry delays {list(retry_delays)})"
    )

    assert state.is_failed()
    assert f"S3 endpoint {dead} unreachable" in state.message
    [load] = api.task_runs(state.state_details.flow_run_id, "load-model", until=failed)
    assert load.run_count == len(retry_delays) + 1  # transient: every retry was tried
    # No timed assertion: the bound is the attempt count (test_retries.py counts botocore's
    # tries too); benchmarks/s3_outage.py measures the seconds.


def test_s3_restart_in_the_middle_of_publishing(prefect_api, tmp_path, monkeypatch):
    """Stop the S3 server right after the model object is written, start it again (same data,
    credentials and port): the save-model task retries, publishes a complete version, and the
    interrupted version stays incomplete and never becomes latest."""
    from flows.training import training_flow

    credentials = (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    port = devstack.free_port()
    server = devstack.start_s3_server(tmp_path / "s3", *credentials, s3_port=port)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("TAXI_BUCKET", "restart-test")
        store = ObjectStore(bucket="restart-test")
        devstack.wait_until(
            lambda: store.ensure_bucket() is None, "bucket on the new S3 server", 60
        )

        # Instrumentation only (the outage itself is real): pause the run right after the
        # first model object is stored, so the server goes down at a known point.
        written, resume, interrupted = threading.Event(), threading.Event(), []
        put_verified = ObjectStore.put_verified

        def pausing_put_verified(self, key, body, content_type="application/octet-stream"):
            sha = put_verified(self, key, body, content_type)
            if key.endswith("/model.pkl") and not written.is_set():
                interrupted.append(key.split("/")[1])
                written.set()
                resume.wait(120)
            return sha

        monkeypatch.setattr(ObjectStore, "put_verified", pausing_put_verified)
        # Retries spread over 17 s: room for the server to come back even on a slow machine.
        monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "2,5,10")
        results = []
        run = threading.Thread(
            target=lambda: results.append(
                training_flow(str(YELLOW_JAN), str(YELLOW_FEB), return_state=True)
            )
        )
        run.start()
        assert written.wait(180)
        server.stop()
        resume.set()
        time.sleep(4)  # longer than botocore's own retries of a refused connection (~3 s)
        server = devstack.start_s3_server(tmp_path / "s3", *credentials, s3_port=port)
        run.join(300)

        [state] = results
        assert state.is_completed(), state.message
        version = state.result()["model_version"]
        assert version != interrupted[0]
        saves = api.task_runs(
            state.state_details.flow_run_id,
            "save-model",
            until=lambda r: r and r[0].state.is_final(),
        )
        assert len(saves) == 1 and saves[0].run_count >= 2  # a task retry recovered, not luck
        # The failed attempt said what failed and where S3 was expected, as documented.
        failed_attempt = f"cannot write s3://restart-test/models/{interrupted[0]}/vectorizer.pkl: S3 endpoint {server.url} unreachable"
        assert any(
            failed_attempt in message for message in api.logs(state.state_details.flow_run_id)
        )
        fresh = ModelRegistry(ObjectStore(bucket="restart-test"))
        assert fresh.latest_marker()["version"] == version
        assert fresh.load_model().version == version
        assert fresh.objects.list_keys(f"models/{interrupted[0]}/") == [
            f"models/{interrupted[0]}/model.pkl"
        ]
        assert fresh.incomplete_versions(older_than=timedelta(0)) == [interrupted[0]]
    finally:
        server.stop()
