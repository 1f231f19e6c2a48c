#!/usr/bin/env bash
# Register the deployments for an image that already exists, without building:
#   bash scripts/ci/deploy-image.sh IMAGE_REF
# Runs `prefect deploy --all --prefect-file prefect-prebuilt.yaml` (the same
# deployments as prefect.yaml, whose build step is for deploying from a laptop)
# with TAXI_IMAGE and TAXI_IMAGE_TAG taken from IMAGE_REF.
#
# Needs the project venv (scripts/setup.sh) and, in the environment, what
# prefect-prebuilt.yaml checks: PREFECT_API_URL, TAXI_WORK_POOL, TAXI_BUCKET,
# TAXI_FLOW_S3_ENDPOINT, AWS_DEFAULT_REGION; for Prefect Cloud
# PREFECT_API_KEY, for a self-hosted server with basic auth PREFECT_API_AUTH_STRING.
set -euo pipefail
cd "$(dirname "$0")/../.."

ref=${1:?usage: deploy-image.sh IMAGE_REF}
name=${ref%:*}
tag=${ref##*:}
if [ "$name" = "$ref" ] || [[ $tag == */* ]]; then
    echo "error: IMAGE_REF must be NAME:TAG (see scripts/ci/image-ref.sh)" >&2
    exit 2
fi
: "${PREFECT_API_URL:?set PREFECT_API_URL (the Prefect API to deploy to)}"
# CI passes unset secrets as empty strings; an empty API key would still be sent.
[ -n "${PREFECT_API_KEY:-}" ] || unset PREFECT_API_KEY
[ -n "${PREFECT_API_AUTH_STRING:-}" ] || unset PREFECT_API_AUTH_STRING

PREFECT=${PREFECT:-.venv/bin/prefect}
TAXI_IMAGE=$name TAXI_IMAGE_TAG=$tag \
    exec "$PREFECT" --no-prompt deploy --all --prefect-file prefect-prebuilt.yaml
