"""The compose stack's worker after a crash, runs that went Late, and scripts/stack-down.sh:
checks that tests/e2e/test_compose_stack.py runs on its one stack, after its deployments are
registered (docs/operations.md#stopping, #when-the-worker-stops).

- The worker's main process killed from the host (what a crash or the kernel's OOM killer
  does): Docker's restart policy brings the container back, healthy, and a new worker of the
  pool is ONLINE. Runs scheduled while the worker was stopped go Late, and the restarted worker
  runs them all, one after another (the deployment's concurrency limit 1, ENQUEUE).
- scripts/stack-down.sh with the test's compose options: no container of the stack's label or
  of the compose project is left, a running flow container included; the volumes stay unless
  --volumes; another stack's container is left alone; a second run says the stack is down.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import docker

from .dockerutil import (
    FLOW_RUN_TIMEOUT,
    REPO,
    api,
    deployment,
    flow_containers,
    run,
    stack_auth,
    wait_for,
)

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
STACK_LABEL = "taxi.stack"


def worker_container(client: docker.DockerClient, project: str):
    [container] = client.containers.list(
        all=True,
        filters={
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=worker"]
        },
    )
    return container


def kill_from_host(client: docker.DockerClient, pid: int, image: str) -> None:
    """SIGKILL to a container's main process from outside the container, as the kernel's OOM
    killer or a crash ends it. A user who may not signal it (the container's user is another)
    does it from a container in the host's PID namespace, as root there."""
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:
        client.containers.run(
            image, ["sh", "-c", f"kill -9 {pid}"], pid_mode="host", user="root", remove=True
        )


def _pool_workers(api_url: str, pool: str, auth) -> dict[str, str]:
    found = api("POST", f"{api_url}/work_pools/{pool}/workers/filter", json={}, auth=auth)
    return {worker["name"]: worker["status"] for worker in found}


def _states(api_url: str, run_id: str, auth) -> list[tuple[float, str]]:
    """The run's states, oldest first: (seconds since the epoch, state name)."""
    found = api("GET", f"{api_url}/flow_run_states/", params={"flow_run_id": run_id}, auth=auth)
    return sorted((datetime.fromisoformat(s["timestamp"]).timestamp(), s["name"]) for s in found)


def _wait_final(api_url: str, run_ids: list[str], auth) -> list[dict]:
    deadline = time.monotonic() + FLOW_RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = [api("GET", f"{api_url}/flow_runs/{run_id}", auth=auth) for run_id in run_ids]
        if all(flow_run["state_type"] in FINAL for flow_run in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"runs not final after {FLOW_RUN_TIMEOUT} s: {runs}")


def check_worker_restart_and_late_runs(stack: dict, client: docker.DockerClient, project: str):
    env, compose = stack["env"], stack["compose"]
    auth = stack_auth(env)
    api_url, pool = env["PREFECT_API_URL"], env["TAXI_WORK_POOL"]
    worker = worker_container(client, project)
    restarts, pid = worker.attrs["RestartCount"], worker.attrs["State"]["Pid"]
    known = set(_pool_workers(api_url, pool, auth))
    t0 = time.monotonic()
    kill_from_host(client, pid, worker.image.id)

    def back() -> bool:
        worker.reload()
        state = worker.attrs["State"]
        return (
            worker.attrs["RestartCount"] == restarts + 1
            and state["Status"] == "running"
            and state["Health"]["Status"] == "healthy"
            and state["Pid"] != pid
        )

    wait_for(back, 120, "the worker restarted by Docker and healthy")
    healthy = time.monotonic() - t0
    wait_for(
        lambda: any(
            status == "ONLINE" and name not in known
            for name, status in _pool_workers(api_url, pool, auth).items()
        ),
        60,
        "a new ONLINE worker in the pool",
    )
    online = time.monotonic() - t0
    print(f"\n  worker killed from the host: healthy again {healthy:.1f} s, ONLINE {online:.1f} s")

    # Runs due while the worker is stopped (an hourly schedule's, here made a minute old)
    # go Late; the worker runs them once it is back, one at a time.
    inference = deployment(api_url, "taxi-inference", auth)
    run([*compose, "stop", "worker"], env, 120)
    now = datetime.now(UTC)
    late = [
        api(
            "POST",
            f"{api_url}/deployments/{inference['id']}/create_flow_run",
            json={
                "state": {
                    "type": "SCHEDULED",
                    "state_details": {"scheduled_time": (now - timedelta(seconds=s)).isoformat()},
                }
            },
            auth=auth,
        )["id"]
        for s in (90, 60)
    ]
    wait_for(
        lambda: all(
            api("GET", f"{api_url}/flow_runs/{run_id}", auth=auth)["state_name"] == "Late"
            for run_id in late
        ),
        60,
        "both runs Late",
    )
    t0 = time.monotonic()
    run([*compose, "start", "worker"], env, 180)
    runs = _wait_final(api_url, late, auth)
    assert [flow_run["state_type"] for flow_run in runs] == ["COMPLETED"] * 2, runs
    histories = [_states(api_url, run_id, auth) for run_id in late]
    spans = sorted(
        (
            min(t for t, name in history if name == "Running"),
            max(t for t, name in history if name == "Completed"),
        )
        for history in histories
    )
    assert spans[0][1] <= spans[1][0], f"the Late runs overlapped: {histories}"
    assert any(name == "AwaitingConcurrencySlot" for h in histories for _, name in h), histories
    print(
        f"  2 Late runs after the worker's start: both Completed {time.monotonic() - t0:.1f} s "
        f"later, one after the other: {[[name for _, name in h] for h in histories]}"
    )


def _stack_down(args: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", "scripts/stack-down.sh", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-3000:])
    return result


# Refuses connections: a transient failure, retried (flows.policy.is_transient).
UNREACHABLE = "https://127.0.0.1:9/green_tripdata_2021-01.parquet"


def _left(client: docker.DockerClient, project: str) -> list[str]:
    return [
        c.name
        for label in (f"{STACK_LABEL}={project}", f"com.docker.compose.project={project}")
        for c in client.containers.list(all=True, filters={"label": label})
    ]


def check_stack_down(stack: dict, client: docker.DockerClient, project: str, stack_image: str):
    env, compose = stack["env"], stack["compose"]
    auth = stack_auth(env)
    api_url, pool = env["PREFECT_API_URL"], env["TAXI_WORK_POOL"]
    # A run that fails at once (its container is kept, as Failed and Crashed runs' are) and one
    # still running when the stack stops, on two deployments (each runs one at a time).
    failing = api(
        "POST",
        f"{api_url}/deployments/{deployment(api_url, 'taxi-inference', auth)['id']}/create_flow_run",
        # Killed at a memory limit its imports alone exceed (a run's command is the worker's).
        json={"job_variables": {"mem_limit": "64m"}},
        auth=auth,
    )["id"]
    running = api(
        "POST",
        f"{api_url}/deployments/{deployment(api_url, 'taxi-training', auth)['id']}/create_flow_run",
        # Its download fails as an unreachable source does, and waits 10 min for its retry.
        json={
            "parameters": {"train_path": UNREACHABLE, "test_path": UNREACHABLE},
            "job_variables": {"env": {"TAXI_IO_RETRY_DELAYS": "600"}},
        },
        auth=auth,
    )["id"]
    # Another stack's container on the same engine (a name that starts like this one's).
    other = f"{project}-other"
    bystander = client.containers.create(
        stack_image,
        ["true"],
        name=f"{other}-bystander",
        labels={STACK_LABEL: other, "com.docker.compose.project": other},
    )
    try:
        [crashed] = _wait_final(api_url, [failing], auth)
        assert crashed["state_type"] == "CRASHED", crashed
        wait_for(
            lambda: [c.status for c in flow_containers(client, running)] == ["running"],
            120,
            "the running flow container",
        )
        [kept] = flow_containers(client, failing)
        labels = kept.labels
        # The pool's label beside the worker's own.
        assert labels[STACK_LABEL] == project, labels
        assert (labels["io.prefect.flow-run-id"], labels["io.prefect.work-pool-name"]) == (
            failing,
            pool,
        ), labels
        assert labels["io.prefect.deployment-name"] == "taxi-inference", labels
        names = {kept.name, flow_containers(client, running)[0].name}
        # (With them, maybe the containers of runs Completed in the last minute: the sweeper
        # has not removed them yet.)
        volumes = {
            v.name
            for v in client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
        }
        assert f"{project}_prefect-db" in volumes, volumes

        t0 = time.monotonic()
        down = _stack_down(compose[2:], env)  # -p, --env-file, -f as the test's compose calls
        seconds = time.monotonic() - t0
        output = down.stdout + down.stderr
        removed = re.search(r"removed (\d+) flow container\(s\) .*, 1 of them running", down.stdout)
        assert removed and int(removed[1]) >= 2, down.stdout
        assert all(name in down.stdout for name in names), down.stdout
        for secret in (env["AWS_SECRET_ACCESS_KEY"], env["TAXI_S3_ROOT_PASSWORD"]):
            assert secret not in output
        assert env["PREFECT_API_AUTH_STRING"].partition(":")[2] not in output
        assert _left(client, project) == [], _left(client, project)
        kept_volumes = {
            v.name
            for v in client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
        }
        assert kept_volumes == volumes and "kept" in down.stdout, (kept_volumes, down.stdout)
        bystander.reload()
        print(f"  stack-down.sh: {seconds:.1f} s\n" + down.stdout)

        # The same through the environment compose reads, with --volumes: the volumes go too.
        files = [compose[i + 1] for i, arg in enumerate(compose) if arg == "-f"]
        by_env = {**env, "COMPOSE_PROJECT_NAME": project, "COMPOSE_FILE": os.pathsep.join(files)}
        gone = _stack_down(["--volumes"], by_env)
        assert f"removed {len(volumes)} volume(s)" in gone.stdout, gone.stdout
        assert not client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
        again = _stack_down(["--volumes"], by_env)
        assert f"stack {project} is down already" in again.stdout, again.stdout
        bystander.reload()
        assert bystander.labels[STACK_LABEL] == other
    finally:
        bystander.remove(force=True)
