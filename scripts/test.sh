#!/usr/bin/env bash
# Run the test suite. It starts its own S3 and Prefect servers on free ports and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
