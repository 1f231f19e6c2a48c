#!/usr/bin/env bash
# Print the image reference to build and deploy: $TAXI_IMAGE:<tag>, where the
# tag is, in order: $TAXI_IMAGE_TAG if set; the git tag name when GitHub
# Actions runs for a tag push (GITHUB_REF_TYPE=tag); else the commit's full
# SHA. Never `latest`: a versioned tag is what makes workers use the exact image.
set -euo pipefail
cd "$(dirname "$0")/../.."

name=${TAXI_IMAGE:?set TAXI_IMAGE (image name, e.g. ghcr.io/OWNER/REPO or taxi-duration)}
# Registries require lowercase repository names (GitHub owners often are not).
name=$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')
if [ -n "${TAXI_IMAGE_TAG:-}" ]; then
    tag=$TAXI_IMAGE_TAG
elif [ "${GITHUB_REF_TYPE:-}" = tag ]; then
    tag=${GITHUB_REF_NAME:?GITHUB_REF_NAME is empty on a tag push}
else
    tag=$(git rev-parse HEAD)
fi
# A Docker tag: letters, digits, _ . -, at most 128, not starting with . or -.
# (Checked here because a git tag such as release/1.0 is not one.)
if ! [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    echo "error: the image tag (from TAXI_IMAGE_TAG, the git tag or the commit) is not a valid Docker tag:" \
         "use letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')" >&2
    exit 1
fi
if [ "$tag" = latest ]; then
    echo "error: the image tag must not be 'latest' (workers would pull it before every run)" >&2
    exit 1
fi
if ! [[ $name =~ ^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$ ]] || [[ ${name##*/} == *:* ]]; then
    echo "error: TAXI_IMAGE is not an image name without tag (e.g. ghcr.io/owner/repo)" >&2
    exit 1
fi
printf '%s:%s\n' "$name" "$tag"
