#!/usr/bin/env bash
# Build the project image from ./Dockerfile and tag it IMAGE_REF (from
# scripts/ci/image-ref.sh):   bash scripts/ci/build-image.sh IMAGE_REF
#
# Optional environment:
#   PYTHON_IMAGE        base image build arg (default: the Dockerfile's python:3.11-slim)
#   TAXI_PIP_NO_INDEX=1 install only from ./wheelhouse (offline builds)
#   TAXI_BUILD_CACHE=registry
#                       BuildKit layer cache in the registry, next to the image
#                       (<image name>:buildcache): read, then written back with
#                       every stage's layers. Needs `docker buildx` with a
#                       builder that can export caches (docker-container driver,
#                       e.g. docker/setup-buildx-action) and a registry login.
set -euo pipefail
cd "$(dirname "$0")/../.."

ref=${1:?usage: build-image.sh IMAGE_REF (see scripts/ci/image-ref.sh)}
args=(--file Dockerfile --tag "$ref"
      --label "org.opencontainers.image.revision=$(git rev-parse HEAD)")
[ -z "${PYTHON_IMAGE:-}" ] || args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
[ -z "${TAXI_PIP_NO_INDEX:-}" ] || args+=(--build-arg "PIP_NO_INDEX=$TAXI_PIP_NO_INDEX")

case "${TAXI_BUILD_CACHE:-}" in
    registry)
        cache="${ref%:*}:buildcache"
        # --load: the image goes to the local engine; push-image.sh pushes it.
        docker buildx build "${args[@]}" --load \
            --cache-from "type=registry,ref=$cache" \
            --cache-to "type=registry,ref=$cache,mode=max" .
        ;;
    "")
        # The engine's own layer cache (a laptop, or a CI machine that keeps it).
        docker build "${args[@]}" .
        ;;
    *)
        echo "error: TAXI_BUILD_CACHE must be 'registry' or unset" >&2
        exit 2
        ;;
esac
echo "built $ref ($(docker image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"
