"""The model signing key's Secret block: never replaced by another key unless asked, and
checked against the model `latest` names, so that a lost key is said at setup rather than
discovered by the next inference run.

Every model version and every data month's manifest is signed with this key: a block that
silently took another key (a typo in TAXI_SETUP_SIGNING_KEY, a .env from another machine)
would make all of them unloadable. So a given key that differs from the block's is refused
unless `--rotate-signing-key` says to replace it; and setup warns when the block's key does
not verify `latest`. Neither message holds a key.
"""

from __future__ import annotations

from prefect.blocks.system import Secret

from taxi.settings import SIGNING_KEY_ENV, Settings
from taxi.storage.errors import BucketNotFoundError, IntegrityError, StorageError
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelNotFoundError, ModelRegistry

ROTATE_FLAG = "--rotate-signing-key"


class SigningKeyConflict(SystemExit):
    """A given signing key differs from the one in the block, and replacing it was not asked."""


async def block_key(block_name: str) -> str | None:
    """The key the Secret block holds; None when there is no such block, or it is empty."""
    try:
        value = (await Secret.aload(block_name)).get()
    except ValueError:  # no such block
        return None
    return value if isinstance(value, str) and value else None


async def save_signing_key(key: str, rotate: bool, block_name: str) -> str:
    """Save `key` in the Secret block unless the block holds another key and `rotate` is
    False (SigningKeyConflict); says what was done."""
    existing = await block_key(block_name)
    if existing == key:
        return f"model signing key: the Secret block {block_name!r} holds it already"
    if existing is not None and not rotate:
        raise SigningKeyConflict(
            f"error: the Secret block {block_name!r} holds another model signing key than "
            f"{SIGNING_KEY_ENV}: replacing it would leave every model version and data month "
            f"signed with it unloadable. Unset {SIGNING_KEY_ENV} to keep the block's key, or "
            f"pass {ROTATE_FLAG} to replace it (then retrain, and ingest the months again)"
        )
    await Secret(value=key).save(block_name, overwrite=True)
    if existing is None:
        return f"model signing key saved in the Secret block {block_name!r}"
    return (
        f"model signing key: replaced the key in the Secret block {block_name!r} ({ROTATE_FLAG}): "
        "models and data months signed with the old key no longer load; retrain, and ingest the "
        "months again"
    )


def latest_warning(key: str, settings: Settings) -> str | None:
    """A warning when `key` does not verify the manifest `latest` names (None: it does, or no
    model is published yet)."""
    registry = ModelRegistry(ObjectStore(bucket=settings.bucket), signing_key=key.encode())
    try:
        registry.load_manifest(*registry.resolve_version("latest"))
    except (ModelNotFoundError, BucketNotFoundError):
        return None
    except IntegrityError as error:
        return (
            f"warning: the signing key of the stack cannot verify the current latest model: {error}"
        )
    except StorageError as error:
        return f"warning: could not check the current latest model against the signing key: {error}"
    return None
