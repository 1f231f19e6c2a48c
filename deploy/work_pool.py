"""Create or update the docker work pool and the Secret blocks its flow runs use.

Why this exists: `prefect deploy` resolves `{{ $VAR }}` and block references in
prefect.yaml at deploy time and stores the resulting values in the deployment's
job variables, in plain text (visible in the API, the UI and `docker inspect`).
So the S3 secret keys are kept out of prefect.yaml entirely: they are saved as
Prefect Secret blocks, and the work pool's base job template gives flow containers only the
blocks' names; the flows load the keys when they start, so neither deployments nor the
containers' configuration (`docker inspect`) carry them.

The model signing key, if TAXI_SIGNING_KEY is set here, is saved the same way
as the Secret block "taxi-signing-key"; deployments then only name it
(TAXI_SIGNING_KEY_BLOCK=taxi-signing-key) and the flows load it themselves. The
deployed flows refuse to run without a key (unless TAXI_ALLOW_UNSIGNED=1); the
compose stack's setup (deploy.stack_setup) generates one when none is given.

The pool's template also decides what a deployment may ask of its containers: only images
of TAXI_IMAGE, only the network TAXI_FLOW_NETWORK, never privileged, host mounts or extra
capabilities, and a memory limit (see base_job_template). It labels every flow container with
the stack's name, TAXI_STACK (taxi.stack=NAME; compose's prefect-setup passes the project name).
The template is data in the API, which whoever holds its credential may change: the worker of
deploy.worker checks every container against the same rules again itself (deploy.container_policy).

Like the network, the link template of the run reports (TAXI_OBJECT_URL_TEMPLATE, optional)
belongs to the stack, whose S3 UI it opens: set here, it is a default of every flow
container's environment, which deployments do not set (prefect.yaml).

Usage (needs PREFECT_API_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, TAXI_IMAGE,
TAXI_FLOW_NETWORK; reads TAXI_OBJECT_URL_TEMPLATE):
    python -m deploy.work_pool [--pool NAME] [--rotate-signing-key]
The pool name defaults to $TAXI_WORK_POOL or "taxi-docker". Safe to re-run: a signing key
that differs from the block's is refused unless --rotate-signing-key (deploy.signing_key).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_docker.worker import DockerWorker

from deploy.automations import setup_automations
from deploy.signing_key import ROTATE_FLAG, save_signing_key
from taxi.settings import (
    DEFAULT_STACK,
    DEFAULT_WORK_POOL,
    FLOW_NETWORK_ENV,
    IMAGE_ENV,
    OBJECT_URL_TEMPLATE_ENV,
    S3_KEY_BLOCK_ENVS,
    Settings,
    secret_value,
)

DEFAULT_POOL = DEFAULT_WORK_POOL

# Environment variable in the flow container -> Secret block holding its value.
SECRET_BLOCKS = {
    "AWS_ACCESS_KEY_ID": "taxi-aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "taxi-aws-secret-access-key",
}
SIGNING_KEY_BLOCK = "taxi-signing-key"
# The default env of every flow container: the *names* of the S3 keys' blocks, which the flows
# load at start (flows.policy.s3_keys_from_blocks), so the keys never show in `docker inspect`;
# and no client telemetry from the flows (Prefect sends none from a non-interactive process
# anyway; this says so where an operator looks).
# Every flow run sends a heartbeat this often (Prefect's minimum; its default is 180 s): the
# zombie automation (deploy/automations.yaml) marks a run Crashed after 90 s without one.
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
HEARTBEAT_SECONDS = "30"
POOL_ENV = {
    **{S3_KEY_BLOCK_ENVS[env_name]: block for env_name, block in SECRET_BLOCKS.items()},
    "DO_NOT_TRACK": "1",
    HEARTBEAT_ENV: HEARTBEAT_SECONDS,
}
# The label naming the stack (TAXI_STACK) on every flow container: what scripts/stack-down.sh
# finds them by, since they are not part of the compose project.
STACK_LABEL = "taxi.stack"


# Docker's grammar for a repository without tag ([registry[:port]/]path, lowercase), as in
# scripts/ci/image-ref.sh, and for the tag and the digest that may follow it.
IMAGE_REPOSITORY = re.compile(r"[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?")
IMAGE_TAG = r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_DIGEST = r"@sha256:[a-f0-9]{64}"
# A network name, or host / bridge / none; not "container:<id>" (another container's namespaces).
NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Memory limit of every flow container unless a deployment sets the job variable mem_limit:
# about four times the peak of the largest training the deployments run (one 1.4 million-trip
# month read and processed at a time, 0.96 GB: docs/performance.md), which leaves room for the
# Prefect engine and for larger months.
DEFAULT_MEM_LIMIT = "4g"
# The job variables a deployment or a flow run may set; everything else about the container
# is fixed in job_configuration below. Left out on purpose: privileged, volumes,
# container_create_kwargs (cap_add, devices, pid/ipc modes, ...), networks, network_mode,
# labels (the worker's pool label decides which containers deploy.worker removes, the stack's
# label which ones scripts/stack-down.sh removes), auto_remove and
# memswap_limit (swap is off: memswap_limit equals mem_limit), command (Prefect's flow-run
# command only) and name (the worker names containers after their run).
ALLOWED_VARIABLES = (
    "env",
    "image",
    "registry_credentials",
    "image_pull_policy",
    "stream_output",
    "mem_limit",
)


def image_pattern(repository: str) -> str:
    """The JSON-schema pattern of `repository` followed by a tag, a digest or both. (Of the
    characters a repository name may hold, only "." means something in a pattern.)"""
    return "^" + repository.replace(".", r"\.") + f"({IMAGE_TAG}({IMAGE_DIGEST})?|{IMAGE_DIGEST})$"


def check_image_and_network(image_repository: str, network: str) -> None:
    """ValueError naming TAXI_IMAGE or TAXI_FLOW_NETWORK if it is not an image name without
    tag, or a Docker network's name."""
    if (
        not IMAGE_REPOSITORY.fullmatch(image_repository)
        or ":" in image_repository.rsplit("/", 1)[-1]
    ):
        raise ValueError(
            f"{IMAGE_ENV} must be an image name without tag, e.g. taxi-duration or ghcr.io/owner/repo"
        )
    if not NETWORK_NAME.fullmatch(network):
        raise ValueError(
            f"{FLOW_NETWORK_ENV} must be the name of a Docker network (e.g. taxi-net or host)"
        )


def base_job_template(
    image_repository: str,
    network: str,
    object_url_template: str | None = None,
    stack: str = DEFAULT_STACK,
) -> dict:
    """prefect-docker's default template, locked down: POOL_ENV (the S3 keys' block names, DO_NOT_TRACK, the heartbeat) as
    defaults (and TAXI_OBJECT_URL_TEMPLATE when `object_url_template` is given), the label naming the stack,
    and only the variables of ALLOWED_VARIABLES open to deployments and flow runs.

    The server validates every deployment's and flow run's job variables against
    `variables` (prefect.server.api.validation), so with `additionalProperties: false` a
    deployment asking for e.g. `privileged` is refused when it is created. The worker builds
    the container from `job_configuration` alone, substituting only `{{ variable }}`
    placeholders; the fixed values there also hold for a deployment registered before the
    pool was locked down.

    The worker merges the `env` variable's default into the job configuration and then the
    deployment's own `env` on top (prefect.workers.base), so deployments can add variables
    without dropping these; a deployment that sets one of them replaces it. (The server only
    accepts placeholders of declared variables in job_configuration itself.)
    """
    check_image_and_network(image_repository, network)
    # The flows' own validation (ValueError naming the variable, not the value); blank: none.
    template_env = Settings.from_env({OBJECT_URL_TEMPLATE_ENV: object_url_template or ""})
    template = DockerWorker.get_default_base_job_template()
    variables = template["variables"]
    variables["properties"] = {name: variables["properties"][name] for name in ALLOWED_VARIABLES}
    variables["additionalProperties"] = False
    # Without an image the worker would run Prefect's own image from Docker Hub.
    variables["required"] = ["image"]
    properties = variables["properties"]
    properties["image"]["pattern"] = image_pattern(image_repository)
    properties["image"]["description"] = f"An image of {image_repository}, with a tag or a digest."
    properties["env"]["default"] = dict(POOL_ENV)
    if template_env.object_url_template:
        properties["env"]["default"][OBJECT_URL_TEMPLATE_ENV] = template_env.object_url_template
    properties["mem_limit"]["default"] = DEFAULT_MEM_LIMIT
    properties["mem_limit"]["pattern"] = "^[1-9][0-9]*[bkmg]?$"  # 0 would mean no limit
    template["job_configuration"].update(
        privileged=False,
        volumes=[],
        container_create_kwargs={},
        networks=[],
        network_mode=network,
        # The worker adds its io.prefect.* labels to these (prefect.workers.base).
        labels={STACK_LABEL: stack},
        auto_remove=False,
        memswap_limit="{{ mem_limit }}",
        command=None,
        name=None,
    )
    return template


async def setup(pool_name: str, settings: Settings, rotate_signing_key: bool = False) -> None:
    secrets = {
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_value(settings.aws_secret_access_key),
    }
    missing = [name for name, value in secrets.items() if not value]
    if missing:
        sys.exit(f"error: set {', '.join(missing)} (the S3 credentials for flow runs)")
    if not settings.image or not settings.flow_network:
        sys.exit(
            f"error: set {IMAGE_ENV} (the project image's name, without tag: deployments of the pool may run only its tags) "
            f"and {FLOW_NETWORK_ENV} (the Docker network of every flow container, e.g. taxi-net or host)"
        )
    try:
        template = base_job_template(
            settings.image, settings.flow_network, settings.object_url_template, settings.stack
        )
    except ValueError as error:
        sys.exit(f"error: {error}")
    for env_name, block_name in SECRET_BLOCKS.items():
        await Secret(value=secrets[env_name]).save(block_name, overwrite=True)
    if settings.signing_key is not None:  # never replacing another key unless asked
        key = settings.signing_key.get_secret_value()
        print(await save_signing_key(key, rotate_signing_key, SIGNING_KEY_BLOCK))
    async with get_client() as client:
        pool = await client.create_work_pool(
            WorkPoolCreate(name=pool_name, type="docker", base_job_template=template),
            overwrite=True,
        )
    print(
        f"work pool {pool.name!r} (type {pool.type}) ready: images of {settings.image}, network {settings.flow_network}, "
        f"label {STACK_LABEL}={settings.stack}, memory limit {DEFAULT_MEM_LIMIT} by default; secrets in blocks "
        + ", ".join(SECRET_BLOCKS.values())
    )
    links = settings.object_url_template or "none (plain s3:// URIs)"
    print(f"run reports link objects to: {links}")


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=settings.work_pool)
    parser.add_argument(ROTATE_FLAG, action="store_true", help="replace the block's signing key")
    args = parser.parse_args()
    asyncio.run(setup(args.pool, settings, args.rotate_signing_key))
    # Alerts: deploy/automations.yaml, notifying the webhook of TAXI_ALERT_WEBHOOK_URL.
    asyncio.run(setup_automations(secret_value(settings.alert_webhook_url)))


if __name__ == "__main__":
    main()
