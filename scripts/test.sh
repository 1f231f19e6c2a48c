#!/usr/bin/env bash
# Run the test suite in parallel worker processes; pytest arguments pass through
# (`bash scripts/test.sh tests/unit -x`; `-n 0` runs the tests in one process). The session
# starts its own S3 and Prefect servers on free ports, once for all workers, and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# More workers than the two cores: the Docker tests and many flow tests mostly wait (image
# builds, containers, the Prefect server). loadfile: the tests of a file run in one worker, in
# order, so a file's module fixtures (a stack on fixed ports, a trained model) are made once and
# its tests may share server-wide state (automations); the files go to whichever worker is free
# in collection order, the Docker tests first (tests/conftest.py).
exec .venv/bin/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder "$@"
