"""Prefect's client telemetry is off wherever the project runs a client: a shell that sourced
the env file (`prefect deploy --all`, local runs), the stack's services and its flow
containers. Prefect prints its notice, and sends usage events, only from a terminal, so the
check imports Prefect in a pseudo-terminal with a new PREFECT_HOME, as a new user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from deploy.work_pool import base_job_template
from tests.env_files import read_env_file

REPO = Path(__file__).resolve().parents[2]
NOTICE = "Prefect collects anonymous usage data"
# Prefect turns its telemetry off when one of these is set (a CI run): not the case checked here.
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TF_BUILD")


def _import_prefect_in_a_terminal(tmp_path: Path, extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES and k != "DO_NOT_TRACK"}
    env.update(PREFECT_HOME=str(tmp_path / f"home-{len(list(tmp_path.iterdir()))}"), **extra)
    primary, secondary = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", "import prefect"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(timeout=120) == 0, output[-2000:]
    return output.decode(errors="replace")


def test_without_the_setting_a_new_user_sees_the_notice(tmp_path):
    # The check's control: the notice is what the settings below turn off.
    assert NOTICE in _import_prefect_in_a_terminal(tmp_path, {})


def test_a_shell_that_sourced_the_env_file_has_no_telemetry(tmp_path):
    value = read_env_file(REPO / ".env.example")["DO_NOT_TRACK"]
    assert NOTICE not in _import_prefect_in_a_terminal(tmp_path, {"DO_NOT_TRACK": value})


def test_the_stacks_clients_and_flow_containers_have_no_telemetry(tmp_path):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    clients = [
        name
        for name, service in compose["services"].items()
        if "PREFECT_API_URL" in service.get("environment", {})
    ]
    assert {"seed", "prefect-setup", "worker"} <= set(clients), clients
    pool = base_job_template("taxi-duration", "taxi-net")["variables"]["properties"]["env"]
    values = [compose["services"][name]["environment"]["DO_NOT_TRACK"] for name in clients]
    values.append(pool["default"]["DO_NOT_TRACK"])
    for value in set(values):
        assert NOTICE not in _import_prefect_in_a_terminal(tmp_path, {"DO_NOT_TRACK": value})
