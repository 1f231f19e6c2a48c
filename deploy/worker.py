"""Start a Prefect docker worker, after checking that it can use the Docker engine.

Why this exists: a worker that cannot open the Docker socket starts and reports
healthy anyway; the problem only shows when the first flow run crashes. In the
compose stack the worker runs as the image's non-root user, which can use the
socket only through the socket's group (DOCKER_GID in .env), so a wrong group id
is the usual first-day failure. This names the group id to set instead.

Usage (the compose worker's command): python -m deploy.worker [prefect worker start arguments]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import docker

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


def main() -> None:
    path = socket_path()
    problem = (socket_problem(path) if path else None) or engine_problem()
    if problem:
        print(f"error: cannot start the docker worker: {problem}", file=sys.stderr, flush=True)
        # 78: EX_CONFIG, a configuration error (retrying will not help).
        sys.exit(78)
    print("Docker engine reachable; starting the Prefect worker", flush=True)
    os.execvp("prefect", ["prefect", "worker", "start", *sys.argv[1:]])


if __name__ == "__main__":
    main()
