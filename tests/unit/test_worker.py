"""`python -m deploy.worker` refuses to start without its own container policy: the settings it
checks every flow container against, whatever the work pool's template says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.paths import ROOT


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set TAXI_IMAGE and TAXI_FLOW_NETWORK for the worker"),
        ({"TAXI_IMAGE": "taxi-duration"}, "set TAXI_IMAGE and TAXI_FLOW_NETWORK for the worker"),
        ({"TAXI_IMAGE": "Evil:tag", "TAXI_FLOW_NETWORK": "n"}, "TAXI_IMAGE must be an image name"),
        (
            {"TAXI_IMAGE": "taxi-duration", "TAXI_FLOW_NETWORK": "container:db"},
            "TAXI_FLOW_NETWORK must be the name of a Docker network",
        ),
        (
            {"TAXI_IMAGE": "t", "TAXI_FLOW_NETWORK": "n", "TAXI_MEM_LIMIT_MAX": "lots"},
            "TAXI_MEM_LIMIT_MAX must be a Docker memory size",
        ),
    ],
)
def test_the_worker_does_not_start_without_a_valid_container_policy(env, message):
    worker = subprocess.run(
        [sys.executable, "-m", "deploy.worker", "--pool", "p"],
        env={"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(ROOT / ".no-prefect-home"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 78 and message in worker.stderr, (worker.returncode, worker.stderr)
    assert "Evil" not in worker.stderr and "lots" not in worker.stderr
