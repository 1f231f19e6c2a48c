"""What the fault tests check on the Prefect API: which task runs failed, and that one failed
after a single attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.client.orchestration import get_client

from tests.integration import prefect_api as api


def failed(runs: list[Any]) -> list[Any]:
    return [run for run in runs if run.state and run.state.is_failed()]


def ran_once(flow_run_id: Any, task: str) -> Any:
    """The failed run of `task` in the flow run, checked on the API to have run exactly once:
    one attempt, and no retry in its state history."""
    [failed_run] = failed(api.task_runs(flow_run_id, task, until=failed))

    async def history() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_run_states(failed_run.id)

    states = asyncio.run(history())
    assert failed_run.run_count == 1
    assert [state.name for state in states if state.is_running()] == ["Running"], [
        s.name for s in states
    ]
    assert not any(state.name in ("AwaitingRetry", "Retrying") for state in states)
    return failed_run
