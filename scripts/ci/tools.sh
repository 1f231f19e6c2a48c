#!/usr/bin/env bash
# Install the pinned CI checkers (requirements-tools.txt) into their own venv,
# .venv-tools, so that they never change the project's pinned packages.
# Prints nothing when they are already installed; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
TOOLS=.venv-tools
# Ruff's pin with its hash lines (the layout scripts/lock.py writes).
ruff_pin=$(sed -n '/^ruff==/,/[^\\]$/p' requirements-test.txt)
want=$( (cat scripts/ci/requirements-tools.txt; echo "$ruff_pin") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$TOOLS/.installed" 2>/dev/null)" != "$want" ]; then
    [ -x "$TOOLS/bin/python" ] || "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
        -r scripts/ci/requirements-tools.txt -r <(echo "$ruff_pin")
    echo "$want" > "$TOOLS/.installed"
fi
