"""The two deploy files stay in step (no Docker needed).

prefect.yaml builds the image and deploys it (from a laptop); prefect-prebuilt.yaml deploys
an image CI has already built and pushed. Both must register the same deployments, with the
same pull steps and job variables except the image, and each must check, before anything is
registered, every required `{{ $VAR }}` it uses (an unset one would silently become "").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from taxi.settings import Settings
from tests.env_files import read_env_file

from .dockerutil import REPO

# {{ $VAR }}s that may be unset: optional build args, the optional fixed tag of a laptop
# build, the signing key's block or the unsigned opt-out (one of the two is required: checked
# by their own test below), the ingestion source (unset: the TLC's site), the drift
# thresholds and the row cap (unset: the defaults).
OPTIONAL = {
    "PYTHON_IMAGE",
    "TAXI_PIP_NO_INDEX",
    "TAXI_IMAGE_TAG",
    "TAXI_SIGNING_KEY_BLOCK",
    "TAXI_ALLOW_UNSIGNED",
    "TAXI_TLC_BASE_URL",
    "TAXI_DRIFT_THRESHOLDS",
    "TAXI_MAX_ROWS",
}


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def _without_image(config: dict) -> list[dict]:
    # Built anew: the deployments share one work_pool mapping (a YAML anchor).
    return [
        {
            **dep,
            "work_pool": {
                **dep["work_pool"],
                "job_variables": {
                    k: v for k, v in dep["work_pool"]["job_variables"].items() if k != "image"
                },
            },
        }
        for dep in config["deployments"]
    ]


def _check_script(config: dict) -> str:
    return next(
        step["prefect.deployments.steps.run_shell_script"]["script"]
        for step in config["build"]
        if step.get("prefect.deployments.steps.run_shell_script", {}).get("id") == "check-env"
    )


def _checked_vars(config: dict) -> set[str]:
    return set(re.findall(r"\$\{(\w+):\?", _check_script(config)))


def _used_vars(config: dict) -> set[str]:
    # From the parsed file, so that comments do not count.
    return set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", yaml.safe_dump(config)))


def test_prebuilt_file_deploys_the_same_deployments_without_a_build():
    laptop, prebuilt = _load("prefect.yaml"), _load("prefect-prebuilt.yaml")
    assert _without_image(prebuilt) == _without_image(laptop)
    assert prebuilt["pull"] == laptop["pull"]
    assert prebuilt["name"] == laptop["name"]
    assert prebuilt["prefect-version"] == laptop["prefect-version"]
    # No build or push of an image: only the shell steps that check the variables.
    steps = {next(iter(step)) for step in prebuilt["build"]}
    assert steps == {"prefect.deployments.steps.run_shell_script"}
    assert not prebuilt.get("push")
    assert "build_docker_image" in (REPO / "prefect.yaml").read_text()
    images = {dep["work_pool"]["job_variables"]["image"] for dep in prebuilt["deployments"]}
    assert images == {"{{ $TAXI_IMAGE }}:{{ $TAXI_IMAGE_TAG }}"}


def test_each_deploy_file_checks_every_required_variable_it_uses():
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        config = _load(name)
        required = _used_vars(config) - OPTIONAL
        assert required, name
        assert required <= _checked_vars(config), (name, required - _checked_vars(config))
    # The prebuilt file has no default tag to fall back on: the tag is required there.
    assert "TAXI_IMAGE_TAG" in _checked_vars(_load("prefect-prebuilt.yaml"))


def test_deployments_that_publish_run_one_at_a_time():
    """Training moves `latest` (and ingestion writes data months): one run at a time of each,
    a second one waits (docs/reliability.md, "Publishing a model version")."""
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        deployments = {dep["name"]: dep for dep in _load(name)["deployments"]}
        for deployment in ("taxi-training", "taxi-ingest"):
            assert deployments[deployment]["concurrency_limit"] == {
                "limit": 1,
                "collision_strategy": "ENQUEUE",
            }, (
                name,
                deployment,
            )


def test_every_deployment_runs_its_flow_with_a_time_limit():
    """prefect.yaml has no field for a flow's timeout (Prefect ignores unknown keys): the
    entrypoints name time-limited copies of the flows (flows/deployed.py), the same flows
    called directly keep none."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.ingest import ingest_flow
    from flows.training import training_flow

    expected = {"taxi-ingest": 2 * 3600, "taxi-training": 3600, "taxi-inference": 50 * 60}
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        limits = {}
        for deployment in _load(name)["deployments"]:
            flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
            limits[deployment["name"]] = flow.timeout_seconds
            assert "timeout_seconds" not in deployment  # would be ignored silently
        assert limits == expected, name
    assert ingest_flow.timeout_seconds is None and training_flow.timeout_seconds is None


def test_deploying_needs_the_signing_key_block_or_the_explicit_unsigned_opt_out():
    required = {name: "x" for name in _checked_vars(_load("prefect-prebuilt.yaml"))}
    base = {"PATH": os.environ["PATH"], **required}
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        script = _check_script(_load(name))

        def check(extra: dict[str, str], script: str = script) -> subprocess.CompletedProcess:
            # The way Prefect's run_shell_script runs it (shell: true): one line, /bin/sh.
            return subprocess.run(
                script,
                shell=True,
                env={**base, **extra},
                capture_output=True,
                text=True,
                check=False,
            )

        refused = check({})
        assert refused.returncode != 0 and "TAXI_SIGNING_KEY_BLOCK" in refused.stderr, (
            name,
            refused,
        )
        assert check({"TAXI_ALLOW_UNSIGNED": "0"}).returncode != 0, name
        assert check({"TAXI_SIGNING_KEY_BLOCK": "taxi-signing-key"}).returncode == 0, name
        assert check({"TAXI_ALLOW_UNSIGNED": "1"}).returncode == 0, name


def test_no_deployment_sets_what_the_work_pool_sets_for_every_flow_container():
    """The worker lays a deployment's `env` over the pool's defaults (prefect.workers.base):
    a variable the deployments set, even to "" from an unset shell variable, would replace
    the pool's value (the S3 keys' block references, the stack's link template)."""
    from deploy.work_pool import base_job_template

    template = base_job_template("taxi-duration", "taxi-net", "http://localhost:9001/{key}")
    pool_env = set(template["variables"]["properties"]["env"]["default"])
    assert "TAXI_OBJECT_URL_TEMPLATE" in pool_env
    for name in ("prefect.yaml", "prefect-prebuilt.yaml"):
        config = _load(name)
        envs = [config["definitions"]["work_pool"]["job_variables"]["env"]]
        envs += [dep["work_pool"]["job_variables"].get("env", {}) for dep in config["deployments"]]
        assert all(pool_env.isdisjoint(env) for env in envs), name


def _compose_env(files: list[str], shell: dict[str, str]) -> dict[str, str]:
    """prefect-setup's environment in `docker compose config` of `files`, with .env.example as
    the env file (as .ci/docker.sh checks it)."""
    if shutil.which("docker") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no docker CLI: CI must provide one (.ci/docker.sh up)")
        pytest.skip("no docker CLI")
    command = ["docker", "compose", "--env-file", ".env.example"]
    command += [arg for name in files for arg in ("-f", name)]
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **shell},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]["prefect-setup"]["environment"]


def test_the_stack_links_reports_to_its_own_s3_ui():
    """prefect-setup gives deploy.work_pool the link template of the S3 UI the stack runs:
    MinIO's console, or with the SeaweedFS override the admin UI's download of the object.
    Fixed in the compose files: .env's TAXI_OBJECT_URL_TEMPLATE (.env.example's is MinIO's,
    for local runs from the host) or the shell's never replaces it."""
    shell = {"TAXI_OBJECT_URL_TEMPLATE": "http://elsewhere.example/{key}"}
    minio = _compose_env(["docker-compose.yml"], shell)
    seaweedfs = _compose_env(["docker-compose.yml", "deploy/seaweedfs/compose.override.yml"], shell)
    assert minio["TAXI_OBJECT_URL_TEMPLATE"] == "http://localhost:9001/browser/{bucket}/{key}"
    assert (
        seaweedfs["TAXI_OBJECT_URL_TEMPLATE"]
        == "http://localhost:9001/api/files/download?path=/buckets/{bucket}/{key}"
    )
    example = read_env_file(REPO / ".env.example")
    assert example["TAXI_OBJECT_URL_TEMPLATE"] == minio["TAXI_OBJECT_URL_TEMPLATE"]
    assert seaweedfs["TAXI_OBJECT_URL_TEMPLATE"] in (REPO / ".env.example").read_text()
    for value in (minio, seaweedfs):  # valid as deploy.work_pool reads it
        Settings.from_env(value)
