"""Bounded retention of finished flow containers: what deploy.worker runs in the background.

The pool keeps containers after they exit (auto_remove is off, see deploy.work_pool), because
a container removed on exit takes the logs of a crash with it. Left alone they pile up (one an
hour from the hourly job alone), each with its environment readable by `docker inspect`. So
the worker looks at its pool's stopped containers every TAXI_CONTAINER_SWEEP_SECONDS and
- removes one whose flow run is Completed (the run's logs stay in the Prefect API) once it
  has been stopped for SUCCESS_GRACE;
- keeps any other one (run Failed, Crashed, Cancelled or deleted; container killed at the
  memory limit; created but never started) for TAXI_KEEP_FAILED_CONTAINERS_HOURS after it
  stopped (or was created), then removes it.
The run's state comes from the Prefect API, not from the exit code: Prefect's engine exits
with 0 once it has recorded the run's final state, Failed included. When the API cannot be
asked, nothing is removed early; the time bound still applies. Running containers are never
touched. A pool's containers are the ones the worker labels with the pool's id
(io.prefect.work-pool-id), so that a pool of the same name on another Prefect server, sharing
the Docker engine, is left alone; deployments cannot set labels (deploy.work_pool).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import docker
from docker.models.containers import Container
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

POOL_LABEL = "io.prefect.work-pool-id"
FLOW_RUN_LABEL = "io.prefect.flow-run-id"
# The worker reads a container's exit code right after it stops; removing it before that
# would only cost a warning in the worker's log, but there is no reason to race it.
SUCCESS_GRACE = timedelta(seconds=20)
NEVER = "0001-01-01T00:00:00Z"  # Docker's FinishedAt of a container that never stopped
STOPPED = ("created", "exited", "dead")


def _instant(value: str) -> datetime:
    """A Docker timestamp (RFC 3339 with nanoseconds) as an aware datetime."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))


def stopped_at(container: Container) -> datetime:
    """When the container stopped (when it was created, if it never ran)."""
    finished = container.attrs["State"].get("FinishedAt") or NEVER
    return _instant(container.attrs["Created"] if finished == NEVER else finished)


def run_completed(flow_run_id: str | None) -> bool:
    """Whether the Prefect API has this flow run as Completed (False if it has no such run)."""
    if not flow_run_id:
        return False
    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(UUID(flow_run_id)).state_type == StateType.COMPLETED
        except ObjectNotFound:
            return False


def pool_id(pool: str) -> str:
    """The id of the work pool called `pool` in the Prefect API."""
    with get_client(sync_client=True) as client:
        return str(client.read_work_pool(pool).id)


def sweep(
    client: docker.DockerClient,
    pool_id: str,
    keep_failed_for: timedelta,
    now: datetime | None = None,
) -> list[str]:
    """Remove the stopped containers of the pool `pool_id` that are due; returns their names."""
    now = now or datetime.now(UTC)
    removed = []
    for container in client.containers.list(
        all=True, filters={"label": f"{POOL_LABEL}={pool_id}"}, ignore_removed=True
    ):
        if container.status not in STOPPED:
            continue
        stopped = stopped_at(container)
        if now - stopped >= keep_failed_for:
            due = True
        elif (
            now - stopped >= SUCCESS_GRACE
            and container.status == "exited"
            and container.attrs["State"]["ExitCode"] == 0
        ):
            flow_run_id = container.labels.get(FLOW_RUN_LABEL)
            try:
                due = run_completed(flow_run_id)
            except Exception as exc:  # noqa: BLE001 (API unreachable, auth, ...: keep it for now)
                print(
                    f"warning: cannot read flow run {flow_run_id} ({exc.__class__.__name__}: {exc})",
                    flush=True,
                )
                due = False
        else:
            due = False
        if not due:
            continue
        try:
            container.remove()
        except docker.errors.NotFound:
            continue  # removed meanwhile (by hand, or by another worker of the pool)
        removed.append(container.name)
    return removed


def sweep_forever(pool: str, keep_failed_for: timedelta, every_seconds: float) -> None:
    """Sweep every `every_seconds` until the process ends; a failed sweep is reported and
    the next one tried (the engine or the API may be restarting). The pool's id is read
    from the API once."""
    known_id = None
    while True:
        try:
            known_id = known_id or pool_id(pool)
            client = docker.from_env(timeout=30)
            try:
                for name in sweep(client, known_id, keep_failed_for):
                    print(f"removed finished flow container {name}", flush=True)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 (any failure: try again next time)
            print(
                f"warning: could not sweep finished flow containers ({exc.__class__.__name__}: {exc})",
                flush=True,
            )
        time.sleep(every_seconds)


def start_sweeper(pool: str, keep_failed_hours: float, every_seconds: float) -> threading.Thread:
    """Run sweep_forever in a daemon thread (it ends with the worker)."""
    thread = threading.Thread(
        target=sweep_forever,
        args=(pool, timedelta(hours=keep_failed_hours), every_seconds),
        name="flow-container-sweeper",
        daemon=True,
    )
    thread.start()
    return thread
