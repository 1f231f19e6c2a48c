#!/usr/bin/env bash
# Lint: the requirement files' hashes, ruff's checks and its formatter in check mode, with
# the settings of pyproject.toml. Exits non-zero on any finding; changes no file.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Every requirement pinned and hashed, so that a dependency added later arrives hashed.
python3 scripts/lock.py --check
bash scripts/ci/tools.sh
.venv-tools/bin/ruff --version
.venv-tools/bin/ruff check .
.venv-tools/bin/ruff format --check .
