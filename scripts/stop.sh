#!/usr/bin/env bash
# Stop the servers the quickstart started (their data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python scripts/devstack.py stop
