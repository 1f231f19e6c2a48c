"""deploy/container_policy.py on prefect-docker's own job configuration, without a server: each
rule refuses what it should, naming the setting and never its value. (The worker applying it to
real runs: tests/integration/test_worker_policy.py; on a real engine: tests/e2e.)"""

from __future__ import annotations

import pytest
from prefect_docker.worker import DockerWorkerJobConfiguration

from deploy.container_policy import FLOW_RUN_COMMAND
from deploy.docker_worker import policy_from_settings
from taxi.settings import Settings

POLICY = policy_from_settings(
    Settings.from_env({"TAXI_IMAGE": "ghcr.io/o/taxi", "TAXI_FLOW_NETWORK": "taxi-net"})
)
DEPLOYMENT_ENV = {"TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key", "AWS_ENDPOINT_URL": "http://s3"}
SAFE = dict(
    image="ghcr.io/o/taxi:20261204",
    network_mode="taxi-net",
    mem_limit="4g",
    memswap_limit="4g",
    command=FLOW_RUN_COMMAND,
    env={**DEPLOYMENT_ENV, "TAXI_ALLOW_UNSIGNED": "", "PREFECT_HOME": "/home/app/.prefect"},
)

REFUSED = [
    ({"privileged": True}, "privileged"),
    ({"volumes": ["/:/host"]}, "volumes"),
    ({"container_create_kwargs": {"devices": ["/dev/sda"]}}, "container_create_kwargs (devices)"),
    ({"container_create_kwargs": {"cap_add": ["SYS_ADMIN"]}}, "container_create_kwargs (cap_add)"),
    ({"network_mode": "host"}, "network_mode"),
    ({"networks": ["taxi-net"]}, "network_mode"),
    ({"image": "ghcr.io/o/taxi-evil:1"}, "image"),
    ({"image": "ghcr.io/o/taxi"}, "image"),  # no tag
    ({"mem_limit": "9g", "memswap_limit": "9g"}, "mem_limit"),
    ({"mem_limit": None, "memswap_limit": None}, "mem_limit"),
    ({"memswap_limit": "-1"}, "memswap_limit"),
    ({"command": "sh -c 'cat /proc/1/environ'"}, "command"),
    ({"env": {**SAFE["env"], "TAXI_ALLOW_UNSIGNED": "1"}}, "env TAXI_ALLOW_UNSIGNED"),
    ({"env": {**SAFE["env"], "TAXI_ALLOW_LOCAL_SOURCES": "true"}}, "env TAXI_ALLOW_LOCAL_SOURCES"),
    ({"env": {**SAFE["env"], "TAXI_SOURCE_BUCKETS": "other"}}, "env TAXI_SOURCE_BUCKETS"),
    ({"env": {**SAFE["env"], "TAXI_SET_ASIDE_AFTER_FAILURES": "999"}}, "TAXI_SET_ASIDE_AFTER"),
    ({"env": {**SAFE["env"], "TAXI_SIGNING_KEY": "k" * 32}}, "env TAXI_SIGNING_KEY"),
    ({"env": {**SAFE["env"], "AWS_ENDPOINT_URL": "http://evil"}}, "env AWS_ENDPOINT_URL"),
    ({"env": {**SAFE["env"], "AWS_SECRET_ACCESS_KEY": "s3cr3t"}}, "env AWS_SECRET_ACCESS_KEY"),
    ({"env": {"PREFECT_HOME": "/home/app/.prefect"}}, "env AWS_ENDPOINT_URL"),  # dropped
]


def _configuration(**changes) -> DockerWorkerJobConfiguration:
    return DockerWorkerJobConfiguration(**{**SAFE, **changes})


def test_the_pools_own_container_passes():
    assert POLICY.refusals(_configuration(), DEPLOYMENT_ENV) == []
    # Less memory than the default, or up to the ceiling; blank equals unset; other env is free.
    for size in ("64m", "8g", "8192m"):
        changed = _configuration(mem_limit=size, memswap_limit=size)
        assert POLICY.refusals(changed, DEPLOYMENT_ENV) == [], size
    free = {**SAFE["env"], "TAXI_DRIFT_THRESHOLDS": "0.2", "TAXI_SIGNING_KEY": ""}
    assert POLICY.refusals(_configuration(env=free), DEPLOYMENT_ENV) == []


@pytest.mark.parametrize(("changes", "setting"), REFUSED, ids=[s for _, s in REFUSED])
def test_each_rule_refuses_naming_the_setting_not_its_value(changes, setting):
    refused = POLICY.refusals(_configuration(**changes), DEPLOYMENT_ENV)
    assert len(refused) == 1 and setting in refused[0], refused
    for value in ("s3cr3t", "http://evil", "k" * 32, "/dev/sda", "taxi-evil", "cat /proc"):
        assert value not in refused[0]


def test_a_name_the_template_asked_for_is_refused():
    refused = POLICY.refusals(_configuration(), DEPLOYMENT_ENV, asked_name="taxi-duration-worker-1")
    assert refused == ["name: the worker names flow containers"]
