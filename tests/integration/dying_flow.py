"""A flow run with a subflow run that sleeps until its process is killed, run here from a flow
run id: `python -m tests.integration.dying_flow <flow run id> [other]`
(tests/integration/test_automations.py); `other`: a flow of another project, named so."""

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


@flow(name="another-project-dying-flow")
def other_dying_flow() -> None:
    time.sleep(3600)


if __name__ == "__main__":
    chosen = other_dying_flow if sys.argv[2:] == ["other"] else dying_flow
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(sys.argv[1]))
    run_flow(chosen, flow_run=flow_run)
