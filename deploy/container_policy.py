"""What the project's worker lets a flow container be, whatever the work pool's template says.

Why this exists: the pool's locked template (deploy.work_pool) is only data in the Prefect API,
and the one credential of the API (PREFECT_API_AUTH_STRING) is in every flow container. Whoever
holds it can PATCH the template back to `privileged: true` and a mount of `/`, and the worker,
which holds the Docker socket, would obey. So the worker of `python -m deploy.worker` checks each
run's final container configuration against its own settings (TAXI_IMAGE, TAXI_FLOW_NETWORK,
TAXI_MEM_LIMIT_MAX, read from its environment, not from the API) before any container is made:
a run asking for more is refused, never quietly given less (`refusals`). Every container it
does start is hardened the same way (`HARDENING`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig

from taxi.settings import (
    ALLOW_LOCAL_SOURCES_ENV,
    ALLOW_UNSIGNED_ENV,
    S3_KEY_BLOCK_ENVS,
    SIGNING_KEY_BLOCK_ENV,
    SIGNING_KEY_ENV,
    SOURCE_BUCKETS_ENV,
    memory_bytes,
)

# The variables that decide what a run may trust or read: a run may not give them another value
# than its deployment's (a flow run's job variables could otherwise turn off model signing or
# open local files). Every AWS_* variable too (endpoint, keys, region).
SECURITY_ENV = (
    ALLOW_UNSIGNED_ENV,
    ALLOW_LOCAL_SOURCES_ENV,
    SOURCE_BUCKETS_ENV,
    "TAXI_SET_ASIDE_AFTER_FAILURES",
    SIGNING_KEY_ENV,
    SIGNING_KEY_BLOCK_ENV,
    *S3_KEY_BLOCK_ENVS.values(),
)
SECURITY_ENV_PREFIX = "AWS_"
# Prefect's own flow-run command (prefect.workers.base): the only one a flow container runs.
FLOW_RUN_COMMAND = "prefect flow-run execute"

# Where the flows write (Python's temporary files, Prefect's home, matplotlib's config and font
# cache: MPLCONFIGDIR in the Dockerfile); the rest of the root filesystem is read-only. tmpfs
# pages count towards the container's memory limit.
PREFECT_HOME = "/home/app/.prefect"
MATPLOTLIB_DIR = "/home/app/.config/matplotlib"
# The most processes and threads a container may have: a training run peaked at 18 on 2 cores
# (docs/performance.md); OpenMP and Arrow start a thread per core, so this leaves room for
# large hosts while stopping a fork bomb.
PIDS_LIMIT = 512
HARDENING: dict[str, Any] = dict(
    cap_drop=["ALL"],
    security_opt=["no-new-privileges"],
    pids_limit=PIDS_LIMIT,
    # A chatty or hostile run cannot fill the host's disk with its log.
    log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
    read_only=True,
    tmpfs={
        "/tmp": "rw,nosuid,nodev,mode=1777",
        PREFECT_HOME: "rw,noexec,nosuid,nodev,size=64m,mode=1777",
        MATPLOTLIB_DIR: "rw,noexec,nosuid,nodev,size=64m,mode=1777",
    },
)


def _blank_is_unset(value: str | None) -> str | None:
    return value or None


@dataclass(frozen=True)
class ContainerPolicy:
    """The worker's own rules: `image_pattern` (a tag or digest of the allowed repository, as
    deploy.work_pool.image_pattern makes it), the one Docker `network`, the memory ceiling."""

    repository: str
    image_pattern: str
    network: str
    mem_limit_max: str

    def refusals(
        self,
        configuration: Any,
        deployment_env: Mapping[str, str | None],
        asked_name: str | None = None,
    ) -> list[str]:
        """What is wrong with a prefect-docker job configuration (after its preparation for the
        run), each item naming the setting and the rule, never a value (an env value may be a
        secret). `deployment_env`: the env the run's deployment sets, over the pool's defaults
        that this worker knows; `asked_name`: the container name the template asked for."""
        refused = []
        if configuration.privileged:
            refused.append("privileged: flow containers are never privileged")
        if configuration.volumes:
            refused.append("volumes: flow containers get no mounts")
        if configuration.container_create_kwargs:
            names = ", ".join(sorted(configuration.container_create_kwargs))
            refused.append(
                f"container_create_kwargs ({names}): no extra create arguments "
                "(devices, capabilities, ...)"
            )
        if configuration.networks or configuration.network_mode != self.network:
            refused.append(
                f"networks / network_mode: flow containers use the network {self.network}"
            )
        if not re.match(self.image_pattern, configuration.image or ""):
            refused.append(f"image: only tags or digests of {self.repository}")
        refused.extend(self._memory_refusals(configuration.mem_limit, configuration.memswap_limit))
        if configuration.command != FLOW_RUN_COMMAND:
            refused.append(f"command: flow containers run {FLOW_RUN_COMMAND!r}")
        if asked_name:
            refused.append("name: the worker names flow containers")
        env = configuration.env or {}
        changed = sorted(
            name
            for name in {*env, *deployment_env}
            if (name in SECURITY_ENV or name.startswith(SECURITY_ENV_PREFIX))
            and _blank_is_unset(env.get(name)) != _blank_is_unset(deployment_env.get(name))
        )
        if changed:
            refused.append(f"env {', '.join(changed)}: a run keeps its deployment's value")
        return refused

    def _memory_refusals(self, mem_limit: str | None, memswap_limit: str | None) -> list[str]:
        ceiling = f"a memory limit of at most {self.mem_limit_max} (TAXI_MEM_LIMIT_MAX)"
        try:
            within = memory_bytes(str(mem_limit)) <= memory_bytes(self.mem_limit_max)
        except ValueError:
            within = False
        if not within:
            return [f"mem_limit: flow containers have {ceiling}"]
        if memswap_limit != mem_limit:
            return ["memswap_limit: flow containers get no swap (it equals mem_limit)"]
        return []
