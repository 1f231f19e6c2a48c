#!/usr/bin/env bash
# Create .venv with the pinned dependencies and this project installed (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}: set PYTHON=python3.11")
PY

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
want=$(cat requirements.lock requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing pinned dependencies into .venv (about a minute the first time)..."
    # Hash-checked (scripts/lock.py): pip refuses any file whose sha256 the files do not list.
    # pip first, its own pin (with its hash lines) taken from requirements-test.txt.
    .venv/bin/python -m pip install --quiet --require-hashes \
        -r <(sed -n '/^pip==/,/[^\\]$/p' requirements-test.txt)
    .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock -r requirements-test.txt
    # The project itself, which hash-checking mode cannot install (it has no hash), without
    # dependencies and built by the pinned setuptools rather than a download of its own.
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
