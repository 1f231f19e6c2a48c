#!/usr/bin/env bash
# Push IMAGE_REF (built by build-image.sh) to its registry (needs a login:
# registry-login.sh).   bash scripts/ci/push-image.sh IMAGE_REF
set -euo pipefail
ref=${1:?usage: push-image.sh IMAGE_REF}
docker push "$ref"
