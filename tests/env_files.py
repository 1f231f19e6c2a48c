"""Reading an env file (.env.example, one make-env.sh wrote) as compose and `set -a; .` do for
the project's plain KEY=value lines."""

from __future__ import annotations

from pathlib import Path


def env_file_values(text: str) -> dict[str, str]:
    """The KEY=value assignments of an env file's text; blank lines and comments left out."""
    pairs = (line.strip().partition("=") for line in text.splitlines())
    return {
        key.strip(): value.strip() for key, sep, value in pairs if sep and not key.startswith("#")
    }


def read_env_file(path: Path) -> dict[str, str]:
    return env_file_values(path.read_text())
