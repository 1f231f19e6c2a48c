"""scripts/ci/check-docs.py on small pages of its own and on the repo's docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    result = _run(_repo(tmp_path, "# T\n" + "text\n" * 1345))
    assert result.returncode == 1
    assert "docs/: 1351 lines in all (at most 1345)" in result.stdout


def test_the_repository_docs_pass():
    result = _run(REPO)
    assert result.returncode == 0, result.stdout
