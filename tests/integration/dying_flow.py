"""A flow run with a subflow run that sleeps until its process is killed, run here from a flow
run id: `python -m tests.integration.dying_flow <flow run id>` (tests/integration/test_automations.py)."""

from __future__ import annotations

import sys
import time
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow


@flow(name="taxi-dying-subflow")
def dying_subflow() -> None:
    time.sleep(3600)


@flow(name="taxi-dying-flow")
def dying_flow() -> None:
    dying_subflow()


if __name__ == "__main__":
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(sys.argv[1]))
    run_flow(dying_flow, flow_run=flow_run)
