"""Facts the docs state that a file defines: the deployments of prefect.yaml, the compose
services, the variables `prefect deploy` and compose read, and `.env.example`'s lines for them.
A change to one of the files fails here until the page (or the template) follows it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import yaml

from flows import deployed

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT_PAGE = REPO / "docs" / "deployment.md"
PREFECT_FILES = ("prefect.yaml", "prefect-prebuilt.yaml")
COMPOSE_FILES = ("docker-compose.yml", "deploy/seaweedfs/compose.override.yml")
# Set by compose itself for interpolation, never by the user.
COMPOSE_OWN = {"COMPOSE_PROJECT_NAME"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _section_rows(page: Path, heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, as lists of stripped cells."""
    lines = f"\n{page.read_text()}".split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line.strip().strip("|").split(" | ") for line in lines if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def _uncommented(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def _prefect_placeholders(name: str) -> set[str]:
    return set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", _uncommented(REPO / name)))


def _deployment_placeholders(name: str) -> set[str]:
    """The {{ $VAR }}s of the deployments themselves (job variables, parameters): `prefect
    deploy` warns once per deployment for each one unset in its environment."""
    deployments = yaml.safe_load((REPO / name).read_text())["deployments"]
    return set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", yaml.safe_dump(deployments)))


def _compose_variables(name: str) -> dict[str, bool]:
    """Each ${VAR} of a compose file -> whether every use of it has a default (`:-`, `-`) or
    an error message (`:?`, `?`), so that compose never substitutes a blank with a warning."""
    found: dict[str, bool] = {}
    for variable, operator in re.findall(r"\$\{(\w+)(:?[-?])?", _uncommented(REPO / name)):
        found[variable] = found.get(variable, True) and bool(operator)
    return {k: v for k, v in found.items() if k not in COMPOSE_OWN}


def _env_example() -> tuple[set[str], set[str]]:
    """The names `.env.example` assigns, and those it shows commented out (`# NAME=...`)."""
    assigned, commented = set(), set()
    for line in (REPO / ".env.example").read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=.*", line):
            assigned.add(match.group(1))
        elif match := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(match.group(1))
    return assigned, commented


def test_the_scheduled_runs_table_matches_prefect_yaml():
    rows = {
        row[0].strip("`"): row
        for row in _section_rows(DEPLOYMENT_PAGE, "## What the scheduled runs do")
    }
    deployments = _deployments()
    assert set(rows) == {deployment["name"] for deployment in deployments}
    assert f"**{NUMBER_WORDS[len(deployments)]} deployments**" in DEPLOYMENT_PAGE.read_text()
    for deployment in deployments:
        name, entrypoint, schedule, limit, parameters = rows[deployment["name"]]
        assert deployment["entrypoint"] == f"flows/deployed.py:{entrypoint.strip('`')}", name
        for declared in deployment["schedules"]:
            cron, interval = declared.get("cron"), declared.get("interval")
            assert (f"cron `{cron}`" if cron else f"every {interval} s") in schedule, name
        one_at_a_time = deployment.get("concurrency_limit", {}).get("limit") == 1
        assert ("one run at a time" in schedule) == one_at_a_time, name
        flow = getattr(deployed, entrypoint.strip("`"))
        assert _seconds(limit) == flow.timeout_seconds, name
        for key, value in deployment["parameters"].items():
            shown = "$TAXI_COLOR" if "taxi-color" in str(value) else str(value).lower()
            assert f"`{key}={shown}`" in parameters, (name, key)


def _seconds(limit: str) -> int:
    number, unit = limit.split()
    return int(number) * {"h": 3600, "min": 60, "s": 1}[unit]


def test_the_services_table_matches_docker_compose():
    rows = _section_rows(
        DEPLOYMENT_PAGE, "# Deployment: Docker Compose and a Prefect docker work pool"
    )
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {row[0].strip("`") for row in rows} == set(compose)
    for name, what in ((row[0].strip("`"), row[1]) for row in rows):
        one_shot = compose[name].get("restart") == "no"
        assert what.startswith("one-shot") == one_shot, name
        for published in compose[name].get("ports", []):
            port = published.rsplit(":", 1)[1]
            assert f"localhost:{port}" in what, (name, port)


def test_the_services_the_override_replaces_exist_in_the_compose_file():
    base = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((REPO / COMPOSE_FILES[1]).read_text())["services"]
    assert set(override) <= set(base)


def test_every_variable_prefect_deploy_reads_is_in_its_table():
    heading = "## Configuration read by `prefect deploy`"
    rows = _section_rows(DEPLOYMENT_PAGE, heading)
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row[0])}
    read = set()
    for name in PREFECT_FILES:
        text = _uncommented(REPO / name)
        used = _prefect_placeholders(name) | set(re.findall(r"\$\{(\w+)[:}]", text))
        assert used <= documented, (name, sorted(used - documented))
        read |= used
    # Nor a row of a variable they no longer read (TAXI_OBJECT_URL_TEMPLATE is the work pool's).
    assert documented <= read, sorted(documented - read)


def test_env_example_sets_every_variable_a_deployment_reads():
    # An unset {{ $VAR }} of a deployment makes every `prefect deploy --all` warn, per deployment,
    # in a shell that sourced .env. (prefect-prebuilt.yaml is CI's, whose variables the workflow
    # and deploy-image.sh set.)
    assigned, _ = _env_example()
    missing = _deployment_placeholders("prefect.yaml") - assigned
    assert not missing, sorted(missing)


def test_env_example_has_a_line_for_every_variable_of_the_deploy_and_compose_files():
    assigned, commented = _env_example()
    for name in PREFECT_FILES:
        missing = _prefect_placeholders(name) - assigned - commented
        assert not missing, (name, sorted(missing))
    for name in COMPOSE_FILES:
        variables = _compose_variables(name)
        missing = set(variables) - assigned - commented
        assert not missing, (name, sorted(missing))
        # A variable used without a default must be set, or compose warns and uses a blank.
        bare = {variable for variable, guarded in variables.items() if not guarded}
        assert bare <= assigned, (name, sorted(bare - assigned))


def test_the_flow_signatures_of_operations_md_match_the_flows():
    text = " ".join((REPO / "docs" / "operations.md").read_text().split())
    calls = re.findall(r"`flows\.(\w+)\.(\w+)\(([^`]*)\)`", text)
    assert len(calls) >= 4, calls
    for module, name, arguments in calls:
        flow = getattr(importlib.import_module(f"flows.{module}"), name)
        parameters = inspect.signature(flow.fn).parameters
        shown = [part.strip().partition("=") for part in arguments.split(",") if part.strip()]
        assert [p for p, _, _ in shown] == list(parameters), (module, name)
        for parameter, has_default, default in shown:
            expected = parameters[parameter].default
            if has_default:
                assert ast.literal_eval(default) == expected, (name, parameter)
            else:
                assert expected is inspect.Parameter.empty, (name, parameter)
