"""How the flows run their tasks and what they may trust: the retry rule, the model signing
key, the source policy, and the registry every model task uses.

I/O tasks (reading data, S3 reads and writes) retry with a growing delay when the failure
may pass: S3 or an HTTP source unreachable, timing out, answering 5xx or throttling
(`is_transient`). Anything else (bad input, a tampered or unloadable model, a 403, a missing
bucket) fails the same way every time, so retrying it only delays the error. The delays are
the run's (TAXI_IO_RETRY_DELAYS, read when a flow starts): flows call I/O tasks through
`io_retries`.

The model signing key is read when a task needs it, from a Prefect Secret block (named by
TAXI_SIGNING_KEY_BLOCK) or the TAXI_SIGNING_KEY variable, and handed to taxi.storage's
ModelRegistry. It is never a task or flow parameter, so it never reaches the Prefect API, and
never logged. The S3 keys come the same way in the work pool's containers
(`s3_keys_from_blocks`). Without a key, training and inference refuse to start unless
TAXI_ALLOW_UNSIGNED=1 says to run unsigned (`model_signing`, called first thing by those
flows; their log and report then say so).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import prefect.runtime.deployment
from prefect import Task, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

import taxi
from taxi.errors import DownloadError
from taxi.settings import (
    ALLOW_UNSIGNED_ENV,
    DEFAULT_IO_RETRY_DELAYS,
    SIGNING_KEY_BLOCK_ENV,
    SIGNING_KEY_ENV,
    Settings,
    export_environment,
)
from taxi.sources import check_source
from taxi.storage.errors import TransientStorageError
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import ModelRegistry

P = ParamSpec("P")
R = TypeVar("R")

VERSION = taxi.__version__

# --- retries -------------------------------------------------------------------------------

# Failures that may pass: S3 after botocore's own retries, a TLC download cut short or past
# its deadline (each attempt has a deadline of its own), an HTTP source that cannot be reached
# or times out.
TRANSIENT_ERRORS = (TransientStorageError, DownloadError, ConnectionError, TimeoutError)
# HTTP answers that say "not now": timeout, too many requests, any 5xx.
TRANSIENT_HTTP_STATUSES = (408, 429)


def is_transient(error: BaseException) -> bool:
    """Whether the same call may succeed later; anything not known to be transient is not."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code in TRANSIENT_HTTP_STATUSES or error.code >= 500
    # Other URLErrors are urllib's "could not connect" (refused, unresolvable, timed out).
    return isinstance(error, (*TRANSIENT_ERRORS, urllib.error.URLError))


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry transient failures only (`is_transient`)."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 (classified here)
        return is_transient(error)
    return False


# What io_retries returns: gives an I/O task the run's retries.
Retrying = Callable[[Task[P, R]], Task[P, R]]


def io_retries(settings: Settings) -> Retrying:
    """Gives an I/O task the retry delays of `settings` (taken when a run starts)."""
    delays = list(settings.io_retry_delays)

    def with_run_retries(io: Task[P, R]) -> Task[P, R]:
        return io.with_options(retries=len(delays), retry_delay_seconds=delays)

    return with_run_retries


# DataFrames and matrices are passed in memory: hashing them for a cache key is wasted work.
pure_task: dict[str, Any] = dict(cache_policy=NO_CACHE, version=VERSION)
# Called outside a flow (or not through io_retries), an I/O task retries with the defaults.
io_task: dict[str, Any] = dict(
    cache_policy=NO_CACHE,
    version=VERSION,
    retries=len(DEFAULT_IO_RETRY_DELAYS),
    retry_delay_seconds=list(DEFAULT_IO_RETRY_DELAYS),
    retry_condition_fn=retry_if_transient,
)

# --- model signing -------------------------------------------------------------------------

# What the log and the report of a run under TAXI_ALLOW_UNSIGNED=1 say.
UNSIGNED_WARNING = (
    f"Models are NOT signed and not checked ({ALLOW_UNSIGNED_ENV}=1): anyone who can write to "
    "the bucket can run code in the flows through a model file"
)


class SigningKeyMissingError(ValueError):
    """No model signing key is configured and running unsigned was not asked for."""


def signing_key(settings: Settings | None = None) -> bytes | None:
    """The model signing key: from the Prefect Secret block named by TAXI_SIGNING_KEY_BLOCK,
    else from TAXI_SIGNING_KEY. None only under TAXI_ALLOW_UNSIGNED=1 (models are then neither
    signed nor checked); without a key and without that opt-out, SigningKeyMissingError."""
    settings = settings or Settings.from_env()
    if settings.signing_key_block is None:
        if settings.signing_key is None and not settings.allow_unsigned:
            raise SigningKeyMissingError(
                f"no model signing key: set {SIGNING_KEY_BLOCK_ENV} to the Prefect Secret block "
                f"holding it (the compose stack's setup creates taxi-signing-key) or "
                f"{SIGNING_KEY_ENV}; to run with unsigned models instead, set "
                f"{ALLOW_UNSIGNED_ENV}=1"
            )
        key = settings.signing_key
        return None if key is None else key.get_secret_value().encode()
    if settings.signing_key is not None:
        # Two sources could disagree between training and inference; make the choice explicit.
        raise ValueError(f"set {SIGNING_KEY_BLOCK_ENV} or {SIGNING_KEY_ENV}, not both")
    return _secret_text(settings.signing_key_block, "the signing key").encode()


def _secret_text(block: str, holding: str) -> str:
    """The text in the Secret block `block`, which must hold `holding`."""
    from prefect.blocks.system import Secret

    value = Secret.load(block).get()
    if not isinstance(value, str) or not value:
        raise ValueError(f"the Secret block {block!r} must hold a non-empty string ({holding})")
    return value


def s3_keys_from_blocks(settings: Settings) -> None:
    """Called first by every flow: puts the S3 keys into this process's environment, where boto3
    reads them, from the Secret blocks that TAXI_AWS_ACCESS_KEY_ID_BLOCK and
    TAXI_AWS_SECRET_ACCESS_KEY_BLOCK name. The work pool's flow containers get only these names,
    so the keys are not in their configuration (`docker inspect`). A block named replaces the
    variable; without names (the quickstart, tests), boto3's own sources as they are."""
    named = {
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id_block,
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key_block,
    }
    export_environment(
        {variable: _secret_text(block, variable) for variable, block in named.items() if block}
    )


def model_signing(settings: Settings) -> bool:
    """Called first by the training and inference flows: fails the run at once when no signing
    key is configured (and running unsigned was not asked for), and logs the opt-out when it
    is used. True if models are signed and checked."""
    if signing_key(settings) is not None:
        return True
    get_run_logger().warning(UNSIGNED_WARNING)
    return False


def model_registry() -> ModelRegistry:
    """The registry in TAXI_BUCKET, with the signing key if one is configured."""
    settings = Settings.from_env()
    return ModelRegistry(ObjectStore(bucket=settings.bucket), signing_key=signing_key(settings))


# --- sources -------------------------------------------------------------------------------


def check_sources(settings: Settings, *sources: str | None) -> None:
    """Refuse, in a deployment's run, run parameters naming sources it may not read
    (taxi.tlc.check_source): only s3:// URIs in the configured bucket(s) and https:// URLs,
    plus local paths if TAXI_ALLOW_LOCAL_SOURCES=true. Anyone who can start a deployment run
    could otherwise make the worker read its own files or the internal network. A flow called
    directly (quickstart, tests, notebooks) reads what its caller could read anyway: no check.
    Sources the flows make themselves (the window's months, the hourly job's files) are in
    the configured bucket."""
    if prefect.runtime.deployment.id is None:
        return
    for source in sources:
        if source is not None:
            check_source(source, settings.readable_buckets, settings.allow_local_sources)
