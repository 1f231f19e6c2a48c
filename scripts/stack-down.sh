#!/usr/bin/env bash
# Stop the compose stack and remove what it leaves behind:
#   bash scripts/stack-down.sh [--volumes] [COMPOSE OPTIONS]    (make stack-down [VOLUMES=1])
# COMPOSE OPTIONS are the `docker compose` options that pick the project, passed to every
# compose call: -p/--project-name, -f/--file, --env-file, --project-directory. As for
# `docker compose` itself, COMPOSE_PROJECT_NAME and COMPOSE_FILE count too, from the
# environment or from the project directory's .env (paths in there are relative to it).
# In this order:
#   1. the worker stops, so that no new flow container starts;
#   2. the stack's flow containers go, found by their label taxi.stack=<project name> (the
#      work pool sets it; they are not part of the compose project), running ones too: the
#      Prefect server they report to goes next, and a running one would keep the network;
#   3. docker compose down --remove-orphans: the project's containers and network. The volumes
#      (the Prefect database, the bucket) stay unless --volumes is given; then every volume of
#      the project goes, also one of an override file not named this time.
# Other projects' and other stacks' containers are left alone. Exit 0 when the stack is
# down already; images stay.
set -euo pipefail

usage="usage: bash scripts/stack-down.sh [--volumes] [-p NAME] [-f FILE]... [--env-file FILE] [--project-directory DIR]"
volumes=0
compose=()
# A path given relative to where the script was called from, made absolute (the script
# runs compose from the project directory).
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
while [ $# -gt 0 ]; do
    case $1 in
        -v | --volumes) volumes=1 ;;
        -h | --help) echo "$usage"; exit 0 ;;
        -p | --project-name)
            [ $# -ge 2 ] || { echo "error: $1 needs a value; $usage" >&2; exit 2; }
            compose+=("$1" "$2"); shift ;;
        --project-name=*) compose+=("$1") ;;
        -f | --file | --env-file | --project-directory)
            [ $# -ge 2 ] || { echo "error: $1 needs a value; $usage" >&2; exit 2; }
            compose+=("$1" "$(absolute "$2")"); shift ;;
        --file=* | --env-file=* | --project-directory=*)
            compose+=("${1%%=*}=$(absolute "${1#*=}")") ;;
        *) echo "error: unknown argument '$1'; $usage" >&2; exit 2 ;;
    esac
    shift
done
cd "$(dirname "$0")/.."

# The project's name as compose resolves it (-p, COMPOSE_PROJECT_NAME, the file's `name:`).
# Read without interpolation: no value of .env passes through here.
if ! config=$(docker compose "${compose[@]}" config --no-interpolate 2>&1); then
    echo "error: docker compose cannot read the stack's compose files: $config" >&2
    exit 2
fi
name=$(sed -n 's/^name: //p' <<<"$config")
if ! [[ $name =~ ^[a-z0-9][a-z0-9_-]*$ ]]; then
    echo "error: no compose project name found in 'docker compose config'" >&2
    exit 2
fi

containers() { docker container ls --all --filter "label=$1" --format '{{.Names}}'; }
project_volumes() { docker volume ls --filter "label=com.docker.compose.project=$name" --format '{{.Name}}'; }
project_networks() { docker network ls --filter "label=com.docker.compose.project=$name" --format '{{.Name}}'; }
joined() { tr '\n' ' ' | sed 's/ $//'; }
count() { grep -c . || true; }

flow=$(containers "taxi.stack=$name")
services=$(containers "com.docker.compose.project=$name")
kept_volumes=$(project_volumes)
if [ -z "$flow$services$(project_networks)" ] && { [ "$volumes" = 0 ] || [ -z "$kept_volumes" ]; }; then
    echo "stack $name is down already: no container or network of it."
    [ -z "$kept_volumes" ] || echo "kept $(count <<<"$kept_volumes") volume(s): $(joined <<<"$kept_volumes") (--volumes deletes them)"
    exit 0
fi

echo "stopping stack $name"
[ -z "$services" ] || docker compose "${compose[@]}" stop worker

flow=$(containers "taxi.stack=$name")
if [ -n "$flow" ]; then
    running=$(docker container ls --filter "label=taxi.stack=$name" --format '{{.Names}}' | count)
    # shellcheck disable=SC2086 # one name a line, none with spaces (Docker's naming rule)
    docker container rm --force $flow >/dev/null
    echo "removed $(count <<<"$flow") flow container(s) with the label taxi.stack=$name, $running of them running: $(joined <<<"$flow")"
else
    echo "no flow container with the label taxi.stack=$name"
fi

# Listed again: a flow container of an image compose built (the :stack tag) carries the
# project's label too, and went above.
services=$(containers "com.docker.compose.project=$name")
down=(down --remove-orphans)
[ "$volumes" = 0 ] || down+=(--volumes)
docker compose "${compose[@]}" "${down[@]}"
[ -z "$services" ] || echo "removed $(count <<<"$services") container(s) of the compose project $name: $(joined <<<"$services")"

left=$(project_volumes)
if [ "$volumes" = 1 ]; then
    # Volumes of an override file not named this time are not in compose's list.
    # shellcheck disable=SC2086 # volume names hold no spaces
    [ -z "$left" ] || docker volume rm $left >/dev/null
    [ -z "$kept_volumes" ] || echo "removed $(count <<<"$kept_volumes") volume(s): $(joined <<<"$kept_volumes")"
elif [ -n "$left" ]; then
    echo "kept $(count <<<"$left") volume(s): $(joined <<<"$left") (the Prefect database, the bucket; --volumes deletes them)"
fi
left=$(containers "taxi.stack=$name"; containers "com.docker.compose.project=$name")
if [ -n "$left" ]; then
    echo "error: still there after docker compose down: $(sort -u <<<"$left" | joined)" >&2
    exit 1
fi
echo "stack $name is down."
