"""The compose stack's Prefect setup: the model signing key, then the work pool and its blocks.

Why this exists: the deployed flows refuse to run without a model signing key (unless
TAXI_ALLOW_UNSIGNED=1), and a key typed by hand is easy to forget. So when none is given
(TAXI_SIGNING_KEY unset), a random key is generated straight into the Prefect Secret block
taxi-signing-key, the block the deployments name (TAXI_SIGNING_KEY_BLOCK): it is never
printed, never in a deployment's parameters or job variables, the image or the repository. A
block that exists already is kept, so restarting the stack never orphans the models signed
with it. A key that is given is saved in the block by deploy.work_pool (and replaces it).

Usage (the prefect-setup one-shot of docker-compose.yml; needs what deploy.work_pool needs):
    python -m deploy.stack_setup [--pool NAME]
"""

from __future__ import annotations

import asyncio
import secrets

from prefect.blocks.system import Secret

from deploy import work_pool
from taxi.settings import Settings

# 32 random bytes, URL-safe base64 (43 characters): well above the registry's 16-byte minimum.
GENERATED_KEY_BYTES = 32


async def ensure_signing_key(
    settings: Settings, block_name: str = work_pool.SIGNING_KEY_BLOCK
) -> str:
    """Make sure the Secret block `block_name` holds a signing key; says what was done."""
    if settings.signing_key is not None:
        return (
            f"model signing key given: deploy.work_pool saves it in the Secret block {block_name!r}"
        )
    try:
        existing = await Secret.aload(block_name)
    except ValueError:  # no such block yet
        existing = None
    if existing is not None and existing.get():
        return f"model signing key: keeping the existing Secret block {block_name!r}"
    await Secret(value=secrets.token_urlsafe(GENERATED_KEY_BYTES)).save(block_name, overwrite=True)
    return f"model signing key: generated a new key into the Secret block {block_name!r}"


def main() -> None:
    print(asyncio.run(ensure_signing_key(Settings.from_env())), flush=True)
    work_pool.main()


if __name__ == "__main__":
    main()
