"""Create or update the docker work pool and the Secret blocks its flow runs use.

Why this exists: `prefect deploy` resolves `{{ $VAR }}` and block references in
prefect.yaml at deploy time and stores the resulting values in the deployment's
job variables, in plain text (visible in the API, the UI and `docker inspect`).
So the S3 secret keys are kept out of prefect.yaml entirely: they are saved as
Prefect Secret blocks, and the work pool's base job template refers to those
blocks. The worker resolves the references only when it starts a flow
container, so deployments carry nothing but non-secret settings.

The model signing key, if TAXI_SIGNING_KEY is set here, is saved the same way
as the Secret block "taxi-signing-key"; deployments then only name it
(TAXI_SIGNING_KEY_BLOCK=taxi-signing-key) and the flows load it themselves.

Usage (needs PREFECT_API_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY):
    python -m deploy.work_pool [--pool NAME]
The pool name defaults to $TAXI_WORK_POOL or "taxi-docker". Safe to re-run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_docker.worker import DockerWorker

from taxi.settings import DEFAULT_WORK_POOL, Settings

DEFAULT_POOL = DEFAULT_WORK_POOL

# Environment variable in the flow container -> Secret block holding its value.
SECRET_BLOCKS = {
    "AWS_ACCESS_KEY_ID": "taxi-aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "taxi-aws-secret-access-key",
}
SIGNING_KEY_BLOCK = "taxi-signing-key"


def base_job_template() -> dict:
    """prefect-docker's default template, with the secret env vars as defaults.

    The worker merges the `env` variable's default into the job configuration
    and then the deployment's own `env` on top (prefect.workers.base), so
    deployments can add variables without dropping these. (The server only
    accepts placeholders of declared variables in job_configuration itself.)
    """
    template = DockerWorker.get_default_base_job_template()
    template["variables"]["properties"]["env"]["default"] = {
        env_name: "{{ prefect.blocks.secret.%s }}" % block_name  # noqa: UP031 (an f-string doubles each brace)
        for env_name, block_name in SECRET_BLOCKS.items()
    }
    return template


async def setup(pool_name: str, settings: Settings) -> None:
    secrets = {"AWS_ACCESS_KEY_ID": settings.aws_access_key_id, "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key}
    missing = [name for name, value in secrets.items() if not value]
    if missing:
        sys.exit(f"error: set {', '.join(missing)} (the S3 credentials for flow runs)")
    for env_name, block_name in SECRET_BLOCKS.items():
        await Secret(value=secrets[env_name]).save(block_name, overwrite=True)
    if settings.signing_key is not None:
        await Secret(value=settings.signing_key.decode()).save(SIGNING_KEY_BLOCK, overwrite=True)
        print(f"model signing key saved in the Secret block {SIGNING_KEY_BLOCK!r}")
    async with get_client() as client:
        pool = await client.create_work_pool(
            WorkPoolCreate(name=pool_name, type="docker", base_job_template=base_job_template()),
            overwrite=True,
        )
    print(f"work pool {pool.name!r} (type {pool.type}) ready; secrets in blocks " + ", ".join(SECRET_BLOCKS.values()))


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=settings.work_pool)
    args = parser.parse_args()
    asyncio.run(setup(args.pool, settings))


if __name__ == "__main__":
    main()
