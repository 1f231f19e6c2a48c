#!/usr/bin/env python3
"""Check that the README and docs/ say only what the repository has.

Fails (exit 1, one `file:line: problem` per finding) when, in README.md or docs/*.md:
- a relative link does not resolve to a file, or its `#anchor` to a heading of that page
  (anchors as GitHub makes them: lowercase, punctuation dropped, spaces to hyphens, -1, -2 for
  repeated headings);
- a command names something missing: `python -m MODULE` (a project module must exist as a file;
  other modules must be in THIRD_PARTY_MODULES), `python PATH.py`, `bash scripts/...` or
  `bash .ci/...`, `make TARGET` (a target of the Makefile);
- a line of docs/ outside code blocks is longer than MAX_LINE characters, or docs/ holds more than
  MAX_DOCS_LINES lines in all.

Standard library only: it runs before anything is installed.
Usage: python scripts/ci/check-docs.py [--root DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 200
# A ceiling, not a target: later features may raise it by what their pages need.
MAX_DOCS_LINES = 1345
# Modules the docs may run with `python -m` that are not part of this repository.
THIRD_PARTY_MODULES = frozenset({"pip", "pytest", "prefect", "venv", "http.server", "ruff"})

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) or [text](target "title"); the text may hold one level of brackets.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]"
    r"\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
PYTHON_MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
PYTHON_SCRIPT = re.compile(r"\bpython3?\s+((?:[\w.-]+/)*[\w.-]+\.py)\b")
BASH_SCRIPT = re.compile(r"\bbash\s+((?:scripts|\.ci)/[\w./-]*[\w-])")
MAKE_COMMAND = re.compile(r"^\s*(?:\$\s+)?make\s+(.*)$")
TARGET_WORD = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
MAKE_TARGET_LINE = re.compile(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Line:
    """One line of a markdown file, and whether it lies inside a fenced code block."""

    number: int
    text: str
    in_code: bool


def read_lines(path: Path) -> list[Line]:
    lines = []
    in_code = False
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(text):
            lines.append(Line(number, text, True))
            in_code = not in_code
            continue
        lines.append(Line(number, text, in_code))
    return lines


def heading_text(raw: str) -> str:
    """The text GitHub renders for a heading: code spans and links reduced to their text."""
    text = CODE_SPAN.sub(lambda match: match.group(2), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("**", "").replace("*", "")


def slug(text: str) -> str:
    """GitHub's anchor of a heading text: lowercase, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def anchors(lines: list[Line]) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in lines:
        if line.in_code:
            continue
        found.update(HTML_ANCHOR.findall(line.text))
        match = HEADING.match(line.text)
        if not match:
            continue
        base = slug(heading_text(match.group(2)))
        seen = counts.get(base, 0)
        counts[base] = seen + 1
        found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def make_targets(makefile: Path) -> set[str]:
    if not makefile.is_file():
        return set()
    targets: set[str] = set()
    for text in makefile.read_text(encoding="utf-8").splitlines():
        match = MAKE_TARGET_LINE.match(text)
        if match and not text.startswith("."):
            targets.update(match.group(1).split())
    return targets


def module_exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def is_project_module(root: Path, module: str) -> bool:
    top = module.split(".")[0]
    return (root / top).is_dir() or (root / f"{top}.py").is_file()


class Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets = make_targets(root / "Makefile")
        self._anchors: dict[Path, set[str]] = {}
        self.problems: list[str] = []

    def anchors_of(self, path: Path) -> set[str]:
        if path not in self._anchors:
            self._anchors[path] = anchors(read_lines(path))
        return self._anchors[path]

    def report(self, path: Path, number: int, problem: str) -> None:
        self.problems.append(f"{path.relative_to(self.root)}:{number}: {problem}")

    def check_file(self, path: Path, *, limit_lines: bool) -> int:
        lines = read_lines(path)
        for line in lines:
            if not line.in_code:
                self.check_links(path, line)
                spans = [match.group(2) for match in CODE_SPAN.finditer(line.text)]
                self.check_make(path, line.number, spans)
                if limit_lines and len(line.text) > MAX_LINE:
                    length = len(line.text)
                    too_long = f"line of {length} characters (at most {MAX_LINE} outside code)"
                    self.report(path, line.number, too_long)
            elif not FENCE.match(line.text):
                self.check_make(path, line.number, [line.text])
            self.check_commands(path, line)
        return len(lines)

    def check_links(self, path: Path, line: Line) -> None:
        text = CODE_SPAN.sub("", line.text)
        targets = [match.group(1) for match in INLINE_LINK.finditer(text)]
        reference = REFERENCE_LINK.match(text)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            if SCHEME.match(target) or target.startswith("//"):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                self.report(path, line.number, f"link to {target}: {file_part} does not exist")
            elif anchor and linked.suffix == ".md" and anchor not in self.anchors_of(linked):
                missing = f"no heading makes the anchor #{anchor}"
                self.report(path, line.number, f"link to {target}: {missing}")

    def check_commands(self, path: Path, line: Line) -> None:
        for module in PYTHON_MODULE.findall(line.text):
            if is_project_module(self.root, module):
                if not module_exists(self.root, module):
                    problem = "no such module in the repository"
                    self.report(path, line.number, f"python -m {module}: {problem}")
            elif module not in THIRD_PARTY_MODULES:
                problem = "not a project module nor an allowed third-party one"
                self.report(path, line.number, f"python -m {module}: {problem}")
        for script in PYTHON_SCRIPT.findall(line.text) + BASH_SCRIPT.findall(line.text):
            if not (self.root / script).is_file():
                self.report(path, line.number, f"{script}: no such file")

    def check_make(self, path: Path, number: int, snippets: list[str]) -> None:
        for snippet in snippets:
            match = MAKE_COMMAND.match(snippet)
            if not match:
                continue
            for word in match.group(1).split():
                if not TARGET_WORD.fullmatch(word):
                    break
                if word not in self.targets:
                    self.report(path, number, f"make {word}: the Makefile has no such target")


def check(root: Path) -> list[str]:
    checker = Checker(root)
    if (root / "README.md").is_file():
        checker.check_file(root / "README.md", limit_lines=False)
    pages = sorted((root / "docs").glob("*.md"))
    docs_lines = sum(checker.check_file(page, limit_lines=True) for page in pages)
    if docs_lines > MAX_DOCS_LINES:
        checker.problems.append(f"docs/: {docs_lines} lines in all (at most {MAX_DOCS_LINES})")
    return checker.problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repository = Path(__file__).resolve().parents[2]
    parser.add_argument("--root", type=Path, default=repository, help="the repository's root")
    root = parser.parse_args(argv).root.resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check-docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-docs: README.md and docs/ are consistent with the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
