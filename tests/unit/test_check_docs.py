"""scripts/ci/check-docs.py on small pages of its own and on the repo's docs; facts of the docs
that files define (deployments, compose services, the variables prefect deploy reads)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "scripts" / "ci" / "check-docs.py"

CLEAN_PAGE = """# A page

See [the other page](other.md#a-heading-with-code), [this one](#a-page)
and [the repeat](other.md#twice-1).

```bash
python -m pkg.tool --help
bash scripts/run.sh
make build
```

Run `make build test`, `python -m pytest` or `python pkg/tool.py`.
"""

OTHER_PAGE = """# A heading with `code`!

## Twice

## Twice
"""


def _repo(tmp_path: Path, page: str) -> Path:
    """A repository with a Makefile, a module, a script and two docs pages, the first one `page`."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tool.py").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_text("")
    (tmp_path / "Makefile").write_text(".PHONY: build test\nbuild:\n\ttrue\ntest: build\n\ttrue\n")
    (tmp_path / "README.md").write_text("# Readme\n\n[docs](docs/page.md#a-page)\n")
    (tmp_path / "docs" / "page.md").write_text(page)
    (tmp_path / "docs" / "other.md").write_text(OTHER_PAGE)
    return tmp_path


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(CHECKER), "--root", str(root)]
    return subprocess.run(command, capture_output=True, text=True)


def test_a_clean_page_passes(tmp_path):
    result = _run(_repo(tmp_path, CLEAN_PAGE))
    assert result.returncode == 0, result.stdout + result.stderr


PROBLEMS = {
    "broken-link": (
        "[gone](missing.md)",
        "page.md:3: link to missing.md: missing.md does not exist",
    ),
    "broken-anchor": ("[x](other.md#nowhere)", "page.md:3: link to other.md#nowhere: no heading"),
    "anchor-of-this-page": ("[x](#twice)", "page.md:3: link to #twice: no heading"),
    "missing-module": (
        "```\npython -m pkg.gone\n```",
        "page.md:4: python -m pkg.gone: no such module",
    ),
    "unknown-module": (
        "Run `python -m elsewhere`.",
        "page.md:3: python -m elsewhere: not a project",
    ),
    "missing-script": ("Run `bash scripts/gone.sh`.", "page.md:3: scripts/gone.sh: no such file"),
    "missing-target": (
        "Run `make build deploy`.",
        "page.md:3: make deploy: the Makefile has no such",
    ),
    "long-line": ("word " * 41, "page.md:3: line of 205 characters"),
}


@pytest.mark.parametrize(("body", "expected"), PROBLEMS.values(), ids=PROBLEMS.keys())
def test_each_problem_fails_the_check_naming_its_line(tmp_path, body, expected):
    result = _run(_repo(tmp_path, f"# T\n\n{body}\n"))
    assert result.returncode == 1
    assert expected in result.stdout, result.stdout


def test_long_lines_in_code_blocks_and_in_the_readme_are_allowed(tmp_path):
    root = _repo(tmp_path, "# T\n\n```\n" + "x" * 300 + "\n```\n")
    (root / "README.md").write_text("# Readme\n\n| " + "y" * 300 + " |\n")
    assert _run(root).returncode == 0


def test_docs_over_the_line_budget_fail(tmp_path):
    result = _run(_repo(tmp_path, "# T\n" + "text\n" * 1200))
    assert result.returncode == 1
    assert "docs/: 1206 lines in all (at most 1200)" in result.stdout


def test_the_repository_docs_pass():
    result = _run(REPO)
    assert result.returncode == 0, result.stdout


# The facts deployment.md states that a file defines: a change to the file fails here until the
# page follows it.
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _section_rows(page: Path, heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, as lists of stripped cells."""
    lines = f"\n{page.read_text()}".split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line.strip().strip("|").split(" | ") for line in lines if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def test_the_scheduled_runs_table_matches_prefect_yaml():
    page = REPO / "docs" / "deployment.md"
    rows = {row[0].strip("`"): row for row in _section_rows(page, "## What the scheduled runs do")}
    deployments = _deployments()
    assert set(rows) == {deployment["name"] for deployment in deployments}
    assert f"**{NUMBER_WORDS[len(deployments)]} deployments**" in page.read_text()
    for deployment in deployments:
        name, entrypoint, schedule, _, parameters = rows[deployment["name"]]
        assert deployment["entrypoint"] == f"flows/deployed.py:{entrypoint.strip('`')}", name
        for declared in deployment["schedules"]:
            cron, interval = declared.get("cron"), declared.get("interval")
            assert (f"cron `{cron}`" if cron else f"every {interval} s") in schedule, name
        for key, value in deployment["parameters"].items():
            shown = "$TAXI_COLOR" if "taxi-color" in str(value) else str(value).lower()
            assert f"`{key}={shown}`" in parameters, (name, key)


def test_the_services_table_matches_docker_compose():
    rows = _section_rows(
        REPO / "docs" / "deployment.md",
        "# Deployment: Docker Compose and a Prefect docker work pool",
    )
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {row[0].strip("`") for row in rows} == set(compose["services"])


def test_every_variable_prefect_deploy_reads_is_in_its_table():
    lines = (REPO / "prefect.yaml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    names = set(re.findall(r"\{\{ \$(\w+) \}\}", text)) | set(re.findall(r"\$\{(\w+)[:}]", text))
    heading = "## Configuration read by `prefect deploy`"
    rows = _section_rows(REPO / "docs" / "deployment.md", heading)
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row[0])}
    assert names <= documented, sorted(names - documented)
    # Nor a row of a variable it no longer reads (TAXI_OBJECT_URL_TEMPLATE is the work pool's).
    assert documented <= names, sorted(documented - names)
