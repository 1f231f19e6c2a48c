"""The compose stack's Prefect setup: the model signing key, then the work pool and its blocks.

Why this exists: the deployed flows refuse to run without a model signing key (unless
TAXI_ALLOW_UNSIGNED=1), and a key typed by hand is easy to forget. So when none is given
(TAXI_SIGNING_KEY unset), a random key is generated straight into the Prefect Secret block
taxi-signing-key, the block the deployments name (TAXI_SIGNING_KEY_BLOCK): it is never
printed, never in a deployment's parameters or job variables, the image or the repository. A
block that exists already is kept, so restarting the stack never orphans the models signed
with it. A key that is given is saved in the block by deploy.work_pool, which refuses to
replace another key unless --rotate-signing-key (deploy.signing_key). Last, setup warns when
the block's key does not verify the model `latest` names.

Usage (the prefect-setup one-shot of docker-compose.yml; needs what deploy.work_pool needs):
    python -m deploy.stack_setup [--pool NAME] [--rotate-signing-key]
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from prefect.blocks.system import Secret

from deploy import work_pool
from deploy.signing_key import block_key, latest_warning
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
    settings = Settings.from_env()
    print(asyncio.run(ensure_signing_key(settings)), flush=True)
    work_pool.main()
    key = asyncio.run(block_key(work_pool.SIGNING_KEY_BLOCK))
    warning = latest_warning(key, settings) if key is not None else None
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
