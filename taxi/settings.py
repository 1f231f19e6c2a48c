"""Every environment variable the project reads, in one pydantic-settings class.

`Settings.from_env()` reads the environment each time it is called: the flows call it when a
run (or a task) starts, the command-line entrypoints when they start, so a changed environment
takes effect on the next run; nothing reads it at import time. This is the only module of
`taxi/` and `flows/` that touches `os.environ` (boto3 reads the AWS_* variables itself; the flows
put the S3 keys there from their Secret blocks through `export_environment`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_BUCKET = "taxi"
DEFAULT_WORK_POOL = "taxi-docker"
# The stack the work pool's flow containers belong to (their label taxi.stack): in the compose
# stack its project name, else the compose file's default name.
DEFAULT_STACK = "taxi-duration"
DEFAULT_TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"  # the TLC's own
# Three retries of transient failures only: with botocore's own bounds on each S3 call
# (taxi.storage.objects), a dead endpoint fails an I/O task in minutes, not hours.
DEFAULT_IO_RETRY_DELAYS: tuple[int, ...] = (2, 10, 30)
# A TLC month of yellow trips is tens of MB as parquet, the largest a few hundred: more than
# this is not a month. The deadline bounds a whole transfer (connecting, headers, redirects and
# body), however slowly a server sends.
DEFAULT_DOWNLOAD_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_DOWNLOAD_DEADLINE_SECONDS = 15 * 60
# Rows one trip file may hold: a file of this many trips, parquet or CSV, trains and predicts
# within the flow containers' default memory limit (docs/performance.md has the measurement).
# Some of the TLC's older yellow months hold more: to read them, raise this and the limit.
DEFAULT_MAX_ROWS = 5_000_000
ALL_STATISTICS = "default"  # the name in TAXI_DRIFT_THRESHOLDS that sets every threshold

# The variables other modules name in their messages.
SIGNING_KEY_ENV = "TAXI_SIGNING_KEY"
SIGNING_KEY_BLOCK_ENV = "TAXI_SIGNING_KEY_BLOCK"
ALLOW_UNSIGNED_ENV = "TAXI_ALLOW_UNSIGNED"
S3_ROOT_USER_ENV = "TAXI_S3_ROOT_USER"
S3_ROOT_PASSWORD_ENV = "TAXI_S3_ROOT_PASSWORD"
S3_UPLOADER_USER_ENV = "TAXI_S3_UPLOADER_USER"
S3_UPLOADER_PASSWORD_ENV = "TAXI_S3_UPLOADER_PASSWORD"
PREFECT_API_AUTH_STRING_ENV = "PREFECT_API_AUTH_STRING"
TLC_BASE_URL_ENV = "TAXI_TLC_BASE_URL"
DOWNLOAD_DEADLINE_ENV = "TAXI_DOWNLOAD_DEADLINE_SECONDS"
ALERT_WEBHOOK_URL_ENV = "TAXI_ALERT_WEBHOOK_URL"
IMAGE_ENV = "TAXI_IMAGE"
FLOW_NETWORK_ENV = "TAXI_FLOW_NETWORK"
STACK_ENV = "TAXI_STACK"
ALLOW_LOCAL_SOURCES_ENV = "TAXI_ALLOW_LOCAL_SOURCES"
SOURCE_BUCKETS_ENV = "TAXI_SOURCE_BUCKETS"
OBJECT_URL_TEMPLATE_ENV = "TAXI_OBJECT_URL_TEMPLATE"
DOWNLOAD_MAX_BYTES_ENV = "TAXI_DOWNLOAD_MAX_BYTES"
MAX_ROWS_ENV = "TAXI_MAX_ROWS"
MEM_LIMIT_MAX_ENV = "TAXI_MEM_LIMIT_MAX"
# The flows' S3 key variables -> the variable naming the Secret block that holds each (what flow
# containers get instead of the keys: flows.policy loads them at start).
S3_KEY_BLOCK_ENVS = {
    "AWS_ACCESS_KEY_ID": "TAXI_AWS_ACCESS_KEY_ID_BLOCK",
    "AWS_SECRET_ACCESS_KEY": "TAXI_AWS_SECRET_ACCESS_KEY_BLOCK",
}
# The highest memory limit the worker gives a flow container, whatever a deployment asks: twice
# the default limit (deploy.work_pool), for the larger months of TAXI_MAX_ROWS.
DEFAULT_MEM_LIMIT_MAX = "8g"
# Docker's memory sizes: a whole number of bytes, or of KiB, MiB, GiB with k, m, g.
MEMORY_SIZE = r"^[1-9][0-9]*[bkmg]?$"
_MEMORY_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _flag(value: object) -> bool:
    if str(value).lower() not in _FLAGS:
        raise ValueError("not a flag")
    return _FLAGS[str(value).lower()]


def _split(value: object) -> object:
    """ "a, b" -> ["a", "b"]; a value that is not text (a default) as it is."""
    return [piece.strip() for piece in value.split(",")] if isinstance(value, str) else value


def _nonblank(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if name)


def _named_thresholds(value: object) -> object:
    """ "a=0.1, b = 0.2" -> {"a": "0.1", "b": " 0.2"}; a lone value is every statistic's."""
    if not isinstance(value, str):
        return value
    pairs = value if "=" in value else f"{ALL_STATISTICS}={value}"
    parts = (pair.partition("=") for pair in pairs.split(","))
    return {name.strip(): text for name, _, text in parts}


def memory_bytes(size: str) -> int:
    """Bytes of a Docker memory size ("4g", "512m", "1000000"); ValueError if it is not one."""
    if not re.fullmatch(MEMORY_SIZE, size):
        raise ValueError("not a memory size such as 4g, 512m or 1000000")
    unit = size[-1] if size[-1] in _MEMORY_UNITS else "b"
    return int(size.rstrip("bkmg")) * _MEMORY_UNITS[unit]


def _memory_size(size: str) -> str:
    memory_bytes(size)
    return size


def _url_template(template: str) -> str:
    try:
        template.format(bucket="b", key="k")
    except (KeyError, IndexError, ValueError, AttributeError):
        raise ValueError("placeholders other than {bucket} and {key}") from None
    if not template.startswith(("http://", "https://")) or "{key}" not in template:
        raise ValueError("not an http(s) URL with {key}")
    return template


# Numbers are read as Python's int() and float() read text. NoDecode: lists and pairs are
# written as documented, not as the JSON pydantic-settings would expect.
Flag = Annotated[bool, BeforeValidator(_flag)]
WholeNumber = Annotated[int, BeforeValidator(int), Field(ge=1)]
Positive = Annotated[float, BeforeValidator(float), Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[int, BeforeValidator(int), Field(ge=0)]
Delays = Annotated[tuple[Seconds, ...], NoDecode, BeforeValidator(_split)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split), AfterValidator(_nonblank)]
Threshold = Annotated[float, BeforeValidator(float), Field(gt=0, le=1)]  # Jensen-Shannon
Thresholds = Annotated[
    dict[Annotated[str, Field(min_length=1)], Threshold],
    NoDecode,
    BeforeValidator(_named_thresholds),
]
UrlTemplate = Annotated[str, AfterValidator(_url_template)]
MemorySize = Annotated[str, AfterValidator(_memory_size)]
# Docker Compose's rule for a project name, which the stack's name is.
StackName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]


# What each variable that can be malformed accepts: "VARIABLE must be ..." (never its value).
ACCEPTS = {
    "TAXI_ALLOW_UNSIGNED": "1 or 0 (true or false)",
    "TAXI_ALLOW_LOCAL_SOURCES": "true or false",
    "TAXI_IO_RETRY_DELAYS": "comma-separated whole seconds, none negative",
    "TAXI_DRIFT_THRESHOLDS": "comma-separated NAME=VALUE pairs or one VALUE, each in (0, 1]",
    "TAXI_SET_ASIDE_AFTER_FAILURES": "a whole number of failed runs, at least 1",
    DOWNLOAD_MAX_BYTES_ENV: "a whole number of bytes, at least 1",
    MAX_ROWS_ENV: "a whole number of rows, at least 1",
    DOWNLOAD_DEADLINE_ENV: "a whole number of seconds, at least 1",
    "TAXI_KEEP_FAILED_CONTAINERS_HOURS": "a number greater than 0",
    "TAXI_CONTAINER_SWEEP_SECONDS": "a number greater than 0",
    OBJECT_URL_TEMPLATE_ENV: "an http(s) URL with placeholders {key} and optionally {bucket}",
    MEM_LIMIT_MAX_ENV: "a Docker memory size: a whole number with an optional unit b, k, m or g",
    STACK_ENV: "a compose project name: lowercase letters, digits, '-' and '_', starting with a letter or digit",
}


class Settings(BaseSettings):
    """The environment as this project reads it (README, "Configuration"), each field under
    its variable's name (its alias). Secrets are SecretStr, out of the repr."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=True)

    bucket: str = Field(DEFAULT_BUCKET, alias="TAXI_BUCKET")
    # Used as given, spaces included: a key is bytes, not a name.
    signing_key: SecretStr | None = Field(None, alias=SIGNING_KEY_ENV)
    signing_key_block: str | None = Field(None, alias=SIGNING_KEY_BLOCK_ENV)
    allow_unsigned: Flag = Field(False, alias=ALLOW_UNSIGNED_ENV)
    io_retry_delays: Delays = Field(DEFAULT_IO_RETRY_DELAYS, alias="TAXI_IO_RETRY_DELAYS")
    work_pool: str = Field(DEFAULT_WORK_POOL, alias="TAXI_WORK_POOL")
    # Secret: a mirror's URL may carry credentials.
    tlc_base_url: SecretStr = Field(SecretStr(DEFAULT_TLC_BASE_URL), alias=TLC_BASE_URL_ENV)
    # boto3 reads these itself; deploy.work_pool stores the keys in Secret blocks for flow
    # containers, deploy.check_env checks them. The ids stay out of the repr too.
    aws_endpoint_url: str | None = Field(None, alias="AWS_ENDPOINT_URL")
    aws_default_region: str | None = Field(None, alias="AWS_DEFAULT_REGION")
    aws_access_key_id: str | None = Field(None, alias="AWS_ACCESS_KEY_ID", repr=False)
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY")
    # The Secret blocks of those keys (flow containers of the work pool get these names).
    aws_access_key_id_block: str | None = Field(None, alias="TAXI_AWS_ACCESS_KEY_ID_BLOCK")
    aws_secret_access_key_block: str | None = Field(None, alias="TAXI_AWS_SECRET_ACCESS_KEY_BLOCK")
    s3_root_user: str | None = Field(None, alias=S3_ROOT_USER_ENV, repr=False)
    s3_root_password: SecretStr | None = Field(None, alias=S3_ROOT_PASSWORD_ENV)
    s3_uploader_user: str | None = Field(None, alias=S3_UPLOADER_USER_ENV, repr=False)
    s3_uploader_password: SecretStr | None = Field(None, alias=S3_UPLOADER_PASSWORD_ENV)
    prefect_api_auth_string: SecretStr | None = Field(None, alias=PREFECT_API_AUTH_STRING_ENV)
    prefect_api_url: str | None = Field(None, alias="PREFECT_API_URL")
    # Secret: webhook URLs often carry a token.
    alert_webhook_url: SecretStr | None = Field(None, alias=ALERT_WEBHOOK_URL_ENV)
    # The names are checked against taxi.monitoring's statistics when a run starts.
    drift_thresholds: Thresholds = Field(default_factory=dict, alias="TAXI_DRIFT_THRESHOLDS")
    set_aside_after_failures: WholeNumber = Field(3, alias="TAXI_SET_ASIDE_AFTER_FAILURES")
    object_url_template: UrlTemplate | None = Field(None, alias=OBJECT_URL_TEMPLATE_ENV)
    # Of each remote input as transferred, and of each file once decompressed (taxi.tlc).
    download_max_bytes: WholeNumber = Field(
        DEFAULT_DOWNLOAD_MAX_BYTES,
        alias=DOWNLOAD_MAX_BYTES_ENV,
    )
    max_rows: WholeNumber = Field(DEFAULT_MAX_ROWS, alias=MAX_ROWS_ENV)
    download_deadline_seconds: WholeNumber = Field(
        DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
        alias=DOWNLOAD_DEADLINE_ENV,
    )
    allow_local_sources: Flag = Field(False, alias=ALLOW_LOCAL_SOURCES_ENV)
    source_buckets: Names = Field((), alias=SOURCE_BUCKETS_ENV)
    image: str | None = Field(None, alias=IMAGE_ENV)
    flow_network: str | None = Field(None, alias=FLOW_NETWORK_ENV)
    stack: StackName = Field(DEFAULT_STACK, alias=STACK_ENV)
    mem_limit_max: MemorySize = Field(DEFAULT_MEM_LIMIT_MAX, alias=MEM_LIMIT_MAX_ENV)
    keep_failed_containers_hours: Positive = Field(72.0, alias="TAXI_KEEP_FAILED_CONTAINERS_HOURS")
    container_sweep_seconds: Positive = Field(60.0, alias="TAXI_CONTAINER_SWEEP_SECONDS")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: object,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment is read by from_env only

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: this process's environment, read now).

        Values are stripped (the signing key aside) and blank ones count as unset. A malformed
        value raises ValueError naming the variable and what it accepts, never the value."""
        try:
            return cls(**_Environ(cls, os.environ if environ is None else environ)())
        except ValidationError as error:
            wrong = dict.fromkeys(str(problem["loc"][0]) for problem in error.errors())
            # `from None`: the ValidationError, printed in a traceback, would show the values.
            message = "; ".join(f"{name} must be {ACCEPTS.get(name, 'valid')}" for name in wrong)
            raise ValueError(message) from None

    @property
    def readable_buckets(self) -> tuple[str, ...]:
        """The buckets a deployment's run parameters may name as sources: TAXI_BUCKET and
        TAXI_SOURCE_BUCKETS."""
        return (self.bucket, *self.source_buckets)


def export_environment(values: Mapping[str, str]) -> None:
    """Set `values` in this process's environment, where libraries that read their own settings
    (boto3) find them."""
    os.environ.update(values)


def secret_value(secret: SecretStr | None) -> str | None:
    """The text of a secret setting where it is used; None when unset."""
    return None if secret is None else secret.get_secret_value()


class _Environ(EnvSettingsSource):
    """pydantic-settings' environment source, reading `environ`: values stripped (the signing
    key aside), blank ones left out."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str]:
        stripped = {name: text.strip() for name, text in self.environ.items()}
        stripped[SIGNING_KEY_ENV] = self.environ.get(SIGNING_KEY_ENV, "")  # used as given
        return {name: text for name, text in stripped.items() if text}
