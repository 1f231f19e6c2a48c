#!/usr/bin/env bash
# Log the Docker CLI in to REGISTRY (e.g. ghcr.io) with REGISTRY_USERNAME and
# REGISTRY_PASSWORD from the environment (CI secrets). The password goes
# through stdin, never the command line.
set -euo pipefail

: "${REGISTRY:?set REGISTRY (e.g. ghcr.io)}"
: "${REGISTRY_USERNAME:?set REGISTRY_USERNAME}"
: "${REGISTRY_PASSWORD:?set REGISTRY_PASSWORD (a token that may push images)}"
printf '%s' "$REGISTRY_PASSWORD" | docker login "$REGISTRY" --username "$REGISTRY_USERNAME" --password-stdin
