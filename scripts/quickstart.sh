#!/usr/bin/env bash
# Set everything up and run the pipeline once on local servers (no Docker needed):
# a Prefect server with its UI and an S3 server, the sample TLC data uploaded, then the
# training flow and the inference flow. The servers keep running; stop them with
#   bash scripts/stop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/python scripts/devstack.py start
# shellcheck disable=SC1091
source .local/env.sh
echo "Uploading the sample data to s3://$TAXI_BUCKET/data/ ..."
.venv/bin/python -m taxi.seed --data-dir data
.venv/bin/python scripts/demo.py
