"""Reading what a flow run left in the Prefect API: its subflow runs, task runs, logs, artifacts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterName,
)
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

PAGE = 200  # the API's largest page


def run_family(flow_run_id: UUID) -> list[UUID]:
    """The flow run and all its subflow runs, at any depth."""

    async def read() -> list[UUID]:
        family, frontier = [flow_run_id], [flow_run_id]
        async with get_client() as client:
            while frontier:
                children = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
                    )
                )
                frontier = [child.id for child in children]
                family += frontier
        return family

    return asyncio.run(read())


def task_runs(
    flow_run_id: UUID, name: str, until: Callable[[list[Any]], bool] = bool, timeout: float = 60
) -> list[Any]:
    """Runs of the task called `name` in the flow run or any of its subflow runs.

    Prefect 3 records task runs from events the server processes in the background, so they
    appear (and reach their final state) a little after the flow run returns: poll until
    `until(runs)` holds or `timeout` passes, and return the last read either way."""
    APILogWorker.drain_all(timeout=30, at_exit=False)
    EventsWorker.drain_all(timeout=30, at_exit=False)
    deadline = time.monotonic() + timeout
    while True:
        runs = _task_runs(flow_run_id, name)
        if until(runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _task_runs(flow_run_id: UUID, name: str) -> list[Any]:
    family = run_family(flow_run_id)

    async def read() -> list[Any]:
        async with get_client() as client:
            found = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(like_=name),
                    flow_run_id=TaskRunFilterFlowRunId(any_=family),
                )
            )
        # Task run names are the task's name plus a counter ("load-data-3"); like_ is a substring match.
        return [run for run in found if run.name.rsplit("-", 1)[0] == name]

    return asyncio.run(read())


def logs(flow_run_id: UUID) -> list[str]:
    """Every log message of the flow run and its subflow runs, as the API stored them."""
    APILogWorker.drain_all(
        timeout=30, at_exit=False
    )  # logs are shipped in the background: send what is queued
    family = run_family(flow_run_id)

    async def read() -> list[str]:
        messages: list[str] = []
        async with get_client() as client:
            while True:
                page = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=family)),
                    limit=PAGE,
                    offset=len(messages),
                )
                messages += [log.message for log in page]
                if len(page) < PAGE:
                    return messages

    return asyncio.run(read())


def artifacts(flow_run_id: UUID, key: str | None = None) -> list[Any]:
    """Artifacts of the flow run and its subflow runs (only those with `key` if given)."""
    family = run_family(flow_run_id)

    async def read() -> list[Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=family))
            )
        return [a for a in found if key is None or a.key == key]

    return asyncio.run(read())


def flow_runs(flow_run_id: UUID) -> list[Any]:
    """The flow run and its subflow runs, with their parameters and states."""
    family = run_family(flow_run_id)

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=family))
            )

    return asyncio.run(read())


def events(
    name: str,
    resource_id: str,
    until: Callable[[list[dict[str, Any]]], bool] = bool,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Events called `name` about the resource `resource_id`, as the server stored them.

    Events are sent in the background and stored asynchronously: poll until `until(found)`
    holds or `timeout` passes, and return the last read either way."""
    EventsWorker.drain_all(timeout=30, at_exit=False)
    query = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}}, "limit": 50}

    async def read() -> list[dict[str, Any]]:
        async with get_client() as client:
            response = await client.request("POST", "/events/filter", json=query)
        return response.json()["events"]

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
