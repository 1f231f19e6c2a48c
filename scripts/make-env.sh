#!/usr/bin/env bash
# Write .env for the compose stack from .env.example, with generated secrets:
#   bash scripts/make-env.sh [PATH]       (default: .env; never overwrites)
# - PREFECT_API_AUTH_STRING: taxi:<40 random hex characters> (the Prefect API's basic auth);
# - TAXI_S3_ROOT_PASSWORD: 40 random hex characters (the S3 server's root password);
# - AWS_SECRET_ACCESS_KEY: 40 other random hex characters (the flows' own S3 user);
# - TAXI_S3_UPLOADER_PASSWORD: 40 more (the uploader, who may only write under incoming/);
# - DOCKER_GID: the group of the Docker socket (DOCKER_HOST's, else /var/run/docker.sock).
# The model signing key is not written here: the setup one-shot generates it
# straight into the Secret block taxi-signing-key (TAXI_SETUP_SIGNING_KEY stays
# empty unless you set a key of your own).
# The file is created readable by you only, and the secrets are made inside the
# program that writes it (never on a command line, which `ps` shows to every user).
# Everything else is .env.example's.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-.env}
if [ -e "$out" ]; then
    echo "error: $out exists; not overwriting it (delete it first to start over)" >&2
    exit 1
fi
socket=/var/run/docker.sock
case "${DOCKER_HOST:-}" in unix://*) socket=${DOCKER_HOST#unix://} ;; esac
if [ -S "$socket" ]; then
    docker_gid=$(stat -c %g "$socket")
else
    docker_gid=
    echo "warning: no Docker socket at $socket: set DOCKER_GID in $out by hand" \
         "(the group id of the socket the worker mounts)" >&2
fi

umask 077
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# Replace the values of these keys, keep every other line (and the comments).
python3 - .env.example "$tmp" "$docker_gid" <<'PY'
import sys
from pathlib import Path
from secrets import token_hex

example, target, docker_gid = sys.argv[1:]
values = {
    "PREFECT_API_AUTH_STRING": f"taxi:{token_hex(20)}",
    "TAXI_S3_ROOT_PASSWORD": token_hex(20),
    "AWS_SECRET_ACCESS_KEY": token_hex(20),
    "TAXI_S3_UPLOADER_PASSWORD": token_hex(20),
    "DOCKER_GID": docker_gid,
}
lines, seen = [], set()
for line in Path(example).read_text().splitlines():
    key = line.split("=", 1)[0]
    if "=" in line and not line.startswith("#") and key in values:
        line = f"{key}={values[key]}"
        seen.add(key)
    lines.append(line)
missing = set(values) - seen
if missing:
    sys.exit(f"error: .env.example lacks {', '.join(sorted(missing))}")
Path(target).write_text("\n".join(lines) + "\n")
PY
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out (secrets generated; DOCKER_GID=${docker_gid:-unset})"
echo "next: docker compose up       (first run builds the image: a few minutes)"
