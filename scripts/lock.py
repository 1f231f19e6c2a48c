#!/usr/bin/env python3
"""The hashes of the pinned requirement files: write them from PyPI, check them, check wheels.

Every install from these files uses `pip install --require-hashes`, so pip refuses any file whose
sha256 is not listed. The hashes are those of every file of the pinned release that pip may pick
on the platforms the project is built on (PLATFORMS x PYTHONS: manylinux and musllinux wheels,
pure-Python ones), and of the sdist where some of them has no wheel pip could pick.

    python scripts/lock.py            rewrite the hash lines of FILES from PyPI (after changing a pin)
    python scripts/lock.py --check    offline: every requirement pinned with == and hashed
    python scripts/lock.py --prune DIR  delete the files of DIR whose sha256 no file lists

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = (
    "requirements.lock",
    "requirements-test.txt",
    "scripts/ci/requirements-tools.txt",
    ".ci/requirements-compose.txt",
)
PLATFORMS = ("x86_64", "aarch64")
PYTHONS = (11, 12, 13, 14)  # CPython 3.x minor versions
# A wheel counts as installable on every machine of a platform if it needs no newer C library
# than these (RHEL 8's glibc, Alpine's musl); wheels needing newer ones are hashed too.
GLIBC_FLOOR = (2, 28)
MUSL_FLOOR = (1, 2)
INDEX = "https://pypi.org/simple/{name}/"

NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
PIN = re.compile(rf"^({NAME})==([A-Za-z0-9.+!_-]+)$")
HASH = re.compile(r"^--hash=sha256:([0-9a-f]{64})$")
WHEEL = re.compile(r"^(.+?)-(.+?)(?:-\d[^-]*)?-([^-]+)-([^-]+)-([^-]+)\.whl$")
LIBC_TAG = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(\w+)$")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass
class Requirement:
    """One `name==version` of a file, its hashes and the line it starts on."""

    name: str
    version: str
    hashes: list[str]
    line: int


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each line, continuations (trailing backslash) joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        start, before = pending if pending else (number, "")
        joined = f"{before} {raw.strip()}".strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1].rstrip())
            continue
        pending = None
        out.append((start, joined))
    if pending:
        out.append(pending)
    return out


def parse(path: Path, label: str) -> tuple[list[Requirement], list[str]]:
    """The requirements of a file and its problems, `label:line: problem` each."""
    requirements: list[Requirement] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, text in logical_lines(path.read_text()):
        text = text.split(" #", 1)[0].strip() if not text.startswith("#") else ""
        if not text:
            continue
        words = text.split()
        pin = PIN.match(words[0])
        if not pin:
            # The content is not repeated: a requirement line may hold a URL with a token.
            problems.append(
                f"{label}:{number}: not a requirement pinned as name==version"
                " (no ranges, markers, URLs, -e, -r or pip options)"
            )
            continue
        hashes = [m.group(1) for w in words[1:] if (m := HASH.match(w))]
        if len(hashes) != len(words) - 1:
            problems.append(
                f"{label}:{number}: {pin.group(1)}: only --hash=sha256:<64 hex> may follow the pin"
            )
        elif not hashes:
            problems.append(
                f"{label}:{number}: {pin.group(1)} has no --hash (run python scripts/lock.py)"
            )
        if canonical(pin.group(1)) in seen:
            problems.append(f"{label}:{number}: {pin.group(1)} is pinned twice")
        seen.add(canonical(pin.group(1)))
        requirements.append(Requirement(pin.group(1), pin.group(2), hashes, number))
    return requirements, problems


def check(root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for name in FILES:
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        requirements, found = parse(path, name)
        text = path.read_text()
        hashes = {f"{canonical(r.name)}=={r.version}": r.hashes for r in requirements}
        # The scripts that take one pin out of a file (sed, up to the first line without a
        # trailing backslash) rely on this layout.
        if not found and render(text, hashes) != text:
            found.append(f"{name}: not in the layout lock.py writes (run python scripts/lock.py)")
        problems += found
    return problems


def _python_tag_fits(python: str, abi: str, minor: int) -> bool:
    for tag in python.split("."):
        if tag in ("py3", f"py3{minor}") and abi == "none":
            return True
        if tag.startswith("cp3") and tag[3:].isdigit():
            built = int(tag[3:])
            if (abi == f"cp3{built}" or abi == "none") and built == minor:
                return True
            if abi == "abi3" and built <= minor:
                return True
    return False


def wheel_fits(filename: str, platform: str, libc: str, minor: int) -> tuple[bool, bool]:
    """(installable on some such machine, installable on every such machine) for a wheel
    on CPython 3.<minor>, `platform` and `libc` ("manylinux" or "musllinux")."""
    match = WHEEL.match(filename)
    if not match:
        return False, False
    python, abis, platforms = match.group(3), match.group(4).split("."), match.group(5).split(".")
    if not any(_python_tag_fits(python, abi, minor) for abi in abis):
        return False, False
    some = every = False
    for tag in platforms:
        if tag == "any":
            return True, True
        legacy = tag.split("_", 1)
        if legacy[0] in LEGACY_MANYLINUX and len(legacy) == 2:
            family, needs, arch = "manylinux", LEGACY_MANYLINUX[legacy[0]], legacy[1]
        elif (m := LIBC_TAG.match(tag)) is not None:
            family, needs, arch = m.group(1), (int(m.group(2)), int(m.group(3))), m.group(4)
        else:
            continue
        if family == libc and arch == platform:
            some = True
            every = every or needs <= (GLIBC_FLOOR if libc == "manylinux" else MUSL_FLOOR)
    return some, every


def select(files: list[dict], name: str, version: str) -> list[str]:
    """The sha256 of each file of `name==version` (PEP 691 `files`) that pip may pick on the
    platforms, plus its sdist when some platform has no wheel that fits every machine."""
    prefix = canonical(name)
    wheels: dict[str, str] = {}
    sdists: list[str] = []
    for entry in files:
        filename, digest = entry["filename"], entry["hashes"].get("sha256")
        if not digest:
            continue
        match = WHEEL.match(filename)
        if match:
            if canonical(match.group(1)) == prefix and match.group(2) == version:
                wheels[filename] = digest
        elif filename.endswith((".tar.gz", ".zip")):
            stem = filename.rsplit(".tar.gz", 1)[0].rsplit(".zip", 1)[0]
            base, _, file_version = stem.rpartition("-")
            if canonical(base) == prefix and file_version == version:
                sdists.append(digest)
    chosen: set[str] = set()
    uncovered = False
    for platform in PLATFORMS:
        for libc in ("manylinux", "musllinux"):
            for minor in PYTHONS:
                covered = False
                for filename, digest in wheels.items():
                    some, every = wheel_fits(filename, platform, libc, minor)
                    if some:
                        chosen.add(digest)
                    covered = covered or every
                uncovered = uncovered or not covered
    if uncovered:
        chosen.update(sdists)
    if not chosen:
        raise SystemExit(f"{name}=={version}: PyPI lists no file for linux {'/'.join(PLATFORMS)}")
    return sorted(chosen)


def fetch_files(name: str) -> list[dict]:
    request = urllib.request.Request(
        INDEX.format(name=canonical(name)),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["files"]


def render(text: str, hashes: dict[str, list[str]]) -> str:
    """`text` with each requirement written as `name==version \\` and one hash per line."""
    out: list[str] = []
    for _, line in logical_lines(text):
        words = line.split()
        pin = PIN.match(words[0]) if words and not line.startswith("#") else None
        if not pin:
            out.append(line)
            continue
        key = f"{canonical(pin.group(1))}=={pin.group(2)}"
        out.append(" \\\n".join([words[0], *(f"    --hash=sha256:{h}" for h in hashes[key])]))
    return "\n".join(out) + "\n"


def update(root: Path = ROOT) -> None:
    for name in FILES:
        path = root / name
        requirements, problems = parse(path, name)
        unpinned = [p for p in problems if "has no --hash" not in p]
        if unpinned:
            raise SystemExit("\n".join(unpinned))
        hashes = {
            f"{canonical(r.name)}=={r.version}": select(fetch_files(r.name), r.name, r.version)
            for r in requirements
        }
        path.write_text(render(path.read_text(), hashes))
        print(f"{name}: {len(requirements)} requirements, {sum(map(len, hashes.values()))} hashes")


def prune(directory: Path, root: Path = ROOT) -> list[str]:
    """Delete each file of `directory` whose sha256 no requirement file lists; their names."""
    known = {h for name in FILES for r in parse(root / name, name)[0] for h in r.hashes}
    removed = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() not in known:
            path.unlink()
            removed.append(path.name)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="check the files offline")
    group.add_argument("--prune", type=Path, metavar="DIR", help="delete unlisted files of DIR")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(ROOT)
        print("\n".join(problems) or f"lock.py: {len(FILES)} files pinned and hashed")
        return 1 if problems else 0
    if args.prune:
        for name in prune(args.prune, ROOT):
            print(
                f"lock.py: removed {name} from {args.prune}: its sha256 is in no requirement file"
            )
        return 0
    update(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
