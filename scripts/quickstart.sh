#!/usr/bin/env bash
# Set everything up and run the pipeline once on local servers (no Docker needed):
# a Prefect server with its UI and an S3 server, the sample TLC months ingested (through the
# taxi-ingest flow), then the training flow and the inference flow. The servers keep
# running; stop them with
#   bash scripts/stop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/python scripts/devstack.py start
# shellcheck disable=SC1091
source .local/env.sh
echo "Ingesting the sample TLC months into s3://$TAXI_BUCKET/data/green/ (taxi-ingest flow) ..."
# The shipped files stand in for the TLC site: same file names, no internet needed.
TAXI_TLC_BASE_URL="$PWD/data" .venv/bin/python -m flows.ingest --color green --start 2021-01 --end 2021-03
echo "Dropping a file into s3://$TAXI_BUCKET/incoming/ for the hourly job ..."
.venv/bin/python -m taxi.seed --data-dir data
.venv/bin/python scripts/demo.py
