"""Start a Prefect docker worker, after checking that it can use the Docker engine, with the
sweeper that removes its pool's finished flow containers (deploy.containers).

Why this exists: a worker that cannot open the Docker socket starts and reports
healthy anyway; the problem only shows when the first flow run crashes. In the
compose stack the worker runs as the image's non-root user, which can use the
socket only through the socket's group (DOCKER_GID in .env), so a wrong group id
is the usual first-day failure. This names the group id to set instead.

The worker is deploy.docker_worker's, which refuses any flow container outside the policy of
deploy.container_policy (TAXI_IMAGE, TAXI_FLOW_NETWORK, TAXI_MEM_LIMIT_MAX from this process's
environment), whatever the work pool's template in the API says.

The sweeper runs in a thread of the worker's own process, so it lives and dies with the
worker: succeeded containers go within about TAXI_CONTAINER_SWEEP_SECONDS (default 60) of
their end, failed ones after TAXI_KEEP_FAILED_CONTAINERS_HOURS (default 72).

Usage (the compose worker's command): python -m deploy.worker --pool NAME [prefect worker start arguments]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import docker
from prefect.cli import app as prefect_cli
from prefect.plugins import load_prefect_collections
from prefect.utilities.dispatch import lookup_type
from prefect.workers.base import BaseWorker

from deploy.containers import start_sweeper
from deploy.docker_worker import TaxiDockerWorker, policy_from_settings
from taxi.settings import Settings

DEFAULT_SOCKET = "/var/run/docker.sock"


def socket_path() -> Path | None:
    """The engine's unix socket (DOCKER_HOST or the default), None for a TCP engine."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return Path(DEFAULT_SOCKET)
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://"))
    return None


def socket_problem(path: Path) -> str | None:
    """Why this process cannot use the socket at `path`, or None if it can."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"no Docker socket at {path}: mount the engine's socket into the worker (volumes: - /var/run/docker.sock:{path})"
    if os.access(path, os.R_OK | os.W_OK):
        return None
    return (
        f"the worker (uid {os.getuid()}, groups {sorted(os.getgroups())}) may not use the "
        f"Docker socket {path} (owner uid {stat.st_uid}, group {stat.st_gid}, mode "
        f"{stat.st_mode & 0o777:o}): set DOCKER_GID={stat.st_gid} in .env (on the Docker "
        f"host: stat -c %g /var/run/docker.sock) and recreate the worker "
        f"(docker compose up -d worker)"
    )


def engine_problem() -> str | None:
    """Why the engine does not answer, or None if it does."""
    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 (any failure to reach the engine is reported the same way)
        return f"the Docker engine does not answer ({exc.__class__.__name__}: {exc})"
    return None


def pool_argument(arguments: list[str]) -> str | None:
    """The value of --pool / -p among `prefect worker start` arguments."""
    for index, argument in enumerate(arguments):
        if argument.startswith("--pool="):
            return argument.removeprefix("--pool=")
        if argument in ("--pool", "-p") and index + 1 < len(arguments):
            return arguments[index + 1]
    return None


def main() -> None:
    arguments = sys.argv[1:]
    pool = pool_argument(arguments)
    if pool is None:
        sys.exit("error: name the work pool: python -m deploy.worker --pool NAME [...]")
    path = socket_path()
    try:
        settings = Settings.from_env()
        TaxiDockerWorker.policy = policy_from_settings(settings)
        problem = (socket_problem(path) if path else None) or engine_problem()
    except ValueError as error:
        problem = str(error)
    # Prefect's CLI finds the worker class by its type: it must be this one, not prefect-docker's.
    load_prefect_collections()
    if lookup_type(BaseWorker, "docker") is not TaxiDockerWorker:
        problem = problem or "the docker worker type is not the project's (deploy.docker_worker)"
    if problem:
        print(f"error: cannot start the docker worker: {problem}", file=sys.stderr, flush=True)
        # 78: EX_CONFIG, a configuration error (retrying will not help).
        sys.exit(78)
    start_sweeper(pool, settings.keep_failed_containers_hours, settings.container_sweep_seconds)
    print(
        f"Docker engine reachable; starting the Prefect worker. Flow containers: images of {settings.image}, "
        f"network {settings.flow_network}, memory at most {settings.mem_limit_max}. Finished ones of pool {pool!r}: "
        f"removed on success, failed ones kept {settings.keep_failed_containers_hours:g} h",
        flush=True,
    )
    # Prefect's CLI in this process (not exec'd), so that the sweeper thread runs beside it.
    sys.argv = ["prefect", "worker", "start", *arguments]
    sys.exit(prefect_cli())


if __name__ == "__main__":
    main()
