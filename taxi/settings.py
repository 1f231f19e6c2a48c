"""Every environment variable the project reads, in one object.

`Settings.from_env()` reads the environment each time it is called: the flows call it when a
run (or a task) starts and the command-line entrypoints when they start, so a changed
environment takes effect on the next run. Nothing reads it at import time. This is the only
module of `taxi/` and `flows/` that touches `os.environ`.

Variables read by other programs, not by this project's code:
- boto3 reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
  AWS_DEFAULT_REGION itself, each time an S3 client is made (taxi.storage.objects.s3_client);
- `prefect deploy` resolves the `{{ $VAR }}` references of prefect.yaml, docker compose the
  `${VAR}` references of docker-compose.yml (.env.example lists them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BUCKET = "taxi"
DEFAULT_WORK_POOL = "taxi-docker"
# The TLC's public folder of monthly trip files.
DEFAULT_TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
# Three retries, 2 + 10 + 30 s apart, of transient failures only: with botocore's bounds on
# one S3 call (taxi.storage.objects: 4 tries, at most ~20 s when connections time out, about
# 0 s when they are refused), a dead S3 endpoint fails an I/O task in at most
# 4 x 20 + 42 = 122 s, and in about 42 s when connections are refused (docs/reliability.md,
# "S3 outages", measured by benchmarks/s3_outage.py).
DEFAULT_IO_RETRY_DELAYS: tuple[int, ...] = (2, 10, 30)

BUCKET_ENV = "TAXI_BUCKET"
SIGNING_KEY_ENV = "TAXI_SIGNING_KEY"
SIGNING_KEY_BLOCK_ENV = "TAXI_SIGNING_KEY_BLOCK"
ALLOW_UNSIGNED_ENV = "TAXI_ALLOW_UNSIGNED"
S3_ROOT_USER_ENV = "TAXI_S3_ROOT_USER"
S3_ROOT_PASSWORD_ENV = "TAXI_S3_ROOT_PASSWORD"
PREFECT_API_AUTH_STRING_ENV = "PREFECT_API_AUTH_STRING"
IO_RETRY_DELAYS_ENV = "TAXI_IO_RETRY_DELAYS"
WORK_POOL_ENV = "TAXI_WORK_POOL"
TLC_BASE_URL_ENV = "TAXI_TLC_BASE_URL"
ALERT_WEBHOOK_URL_ENV = "TAXI_ALERT_WEBHOOK_URL"
OBJECT_URL_TEMPLATE_ENV = "TAXI_OBJECT_URL_TEMPLATE"
DRIFT_THRESHOLDS_ENV = "TAXI_DRIFT_THRESHOLDS"
SET_ASIDE_AFTER_FAILURES_ENV = "TAXI_SET_ASIDE_AFTER_FAILURES"
IMAGE_ENV = "TAXI_IMAGE"
FLOW_NETWORK_ENV = "TAXI_FLOW_NETWORK"
KEEP_FAILED_CONTAINERS_HOURS_ENV = "TAXI_KEEP_FAILED_CONTAINERS_HOURS"
CONTAINER_SWEEP_SECONDS_ENV = "TAXI_CONTAINER_SWEEP_SECONDS"
# The docker worker keeps a failed run's container this long for its logs (deploy.containers).
DEFAULT_KEEP_FAILED_CONTAINERS_HOURS = 72.0
DEFAULT_CONTAINER_SWEEP_SECONDS = 60.0
# The hourly job sets a file aside after this many failed runs (taxi.incoming).
DEFAULT_SET_ASIDE_AFTER_FAILURES = 3
DOWNLOAD_MAX_BYTES_ENV = "TAXI_DOWNLOAD_MAX_BYTES"
DOWNLOAD_DEADLINE_ENV = "TAXI_DOWNLOAD_DEADLINE_SECONDS"
# A remote input (an ingested TLC month, a run's s3:// or https:// source; taxi.download): a
# TLC month of yellow trips is 20-60 MB as parquet, the largest a few hundred; more than this
# is not a month. The deadline bounds the whole transfer, however slowly the server sends.
DEFAULT_DOWNLOAD_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_DOWNLOAD_DEADLINE_SECONDS = 15 * 60
ALLOW_LOCAL_SOURCES_ENV = "TAXI_ALLOW_LOCAL_SOURCES"
SOURCE_BUCKETS_ENV = "TAXI_SOURCE_BUCKETS"
# The name in TAXI_DRIFT_THRESHOLDS that sets every statistic's threshold at once.
ALL_STATISTICS = "default"
BOTO3_VARIABLES: tuple[str, ...] = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class Settings:
    """The environment as this project reads it. Secrets are kept out of the repr."""

    # TAXI_BUCKET: the bucket of models, predictions, data and incoming files.
    bucket: str = DEFAULT_BUCKET
    # TAXI_SIGNING_KEY: signs model manifests (HMAC-SHA256); unset or empty: no signing.
    signing_key: bytes | None = field(default=None, repr=False)
    # TAXI_SIGNING_KEY_BLOCK: the Prefect Secret block holding the signing key, for flows
    # (deployments name the block instead of carrying the key).
    signing_key_block: str | None = None
    # TAXI_ALLOW_UNSIGNED=1: the documented opt-out of model signing. Without a signing key and
    # without it, training and inference refuse to start (flows.tasks.signing_key).
    allow_unsigned: bool = False
    # TAXI_IO_RETRY_DELAYS: seconds between retries of the flows' I/O tasks, e.g. "1,2,4".
    io_retry_delays: tuple[int, ...] = DEFAULT_IO_RETRY_DELAYS
    # TAXI_WORK_POOL: the docker work pool deploy.work_pool creates.
    work_pool: str = DEFAULT_WORK_POOL
    # TAXI_TLC_BASE_URL: the folder of monthly TLC files the ingest flow copies from, an
    # http(s):// URL (the TLC's site, a mirror) or a local directory of files of the same
    # names. Kept out of the repr: a mirror's URL may carry credentials.
    tlc_base_url: str = field(default=DEFAULT_TLC_BASE_URL, repr=False)
    # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: read here only by deploy.work_pool, which
    # stores them in Secret blocks for flow containers (boto3 reads them on its own).
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    # TAXI_S3_ROOT_USER, TAXI_S3_ROOT_PASSWORD: the S3 server's root user of the compose stack,
    # read only by its setup (deploy.check_env, deploy.s3_setup); the flows never use them.
    s3_root_user: str | None = field(default=None, repr=False)
    s3_root_password: str | None = field(default=None, repr=False)
    # PREFECT_API_AUTH_STRING: Prefect's own client setting ("user:password" of the server's
    # basic auth); read here only by deploy.check_env, which refuses a placeholder.
    prefect_api_auth_string: str | None = field(default=None, repr=False)
    # TAXI_ALERT_WEBHOOK_URL: where the alerting automations post (deploy.automations stores
    # it in a notification block); a secret, since such URLs often carry a token.
    alert_webhook_url: str | None = field(default=None, repr=False)
    # TAXI_DRIFT_THRESHOLDS: drift thresholds by statistic name, "pickup_zone=0.15,default=0.12",
    # or one number for all; names are checked against taxi.monitoring's when a run starts.
    drift_thresholds: Mapping[str, float] = field(default_factory=dict)
    # TAXI_SET_ASIDE_AFTER_FAILURES: failed hourly runs after which an incoming file is set aside.
    set_aside_after_failures: int = DEFAULT_SET_ASIDE_AFTER_FAILURES
    # TAXI_OBJECT_URL_TEMPLATE: how a browser opens a bucket object, with {bucket} and {key}, e.g.
    # MinIO's console http://localhost:9001/browser/{bucket}/{key}; the run reports link there.
    object_url_template: str | None = None
    # TAXI_DOWNLOAD_MAX_BYTES, TAXI_DOWNLOAD_DEADLINE_SECONDS: bounds on each remote input
    # (s3:// or http(s)://) a run reads or ingests: its size, checked before reading and
    # while streaming, and the whole transfer's duration.
    download_max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES
    download_deadline_seconds: int = DEFAULT_DOWNLOAD_DEADLINE_SECONDS
    # TAXI_ALLOW_LOCAL_SOURCES: "true" lets a deployment's runs read local paths named by their
    # parameters (a worker with a data directory of its own); off by default. Flows called
    # directly (quickstart, tests, notebooks) always may.
    allow_local_sources: bool = False
    # TAXI_SOURCE_BUCKETS: buckets besides TAXI_BUCKET that a deployment's run parameters may
    # name as s3:// sources, comma-separated (e.g. a landing bucket); none by default.
    source_buckets: tuple[str, ...] = ()
    # TAXI_IMAGE, TAXI_FLOW_NETWORK: read by deploy.work_pool, which allows deployments of its
    # pool only images of this repository (no tag) and runs every flow container on this network.
    image: str | None = None
    flow_network: str | None = None
    # TAXI_KEEP_FAILED_CONTAINERS_HOURS, TAXI_CONTAINER_SWEEP_SECONDS: read by deploy.worker:
    # how long a failed run's container is kept, how often finished containers are looked at.
    keep_failed_containers_hours: float = DEFAULT_KEEP_FAILED_CONTAINERS_HOURS
    container_sweep_seconds: float = DEFAULT_CONTAINER_SWEEP_SECONDS
    # PREFECT_API_URL: Prefect's own setting; read here only to print the UI's address.
    prefect_api_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: this process's environment, read now).

        Empty values count as unset. A malformed value raises ValueError naming the
        variable, never the value of a secret."""
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            text = env.get(name, "").strip()
            return text or None

        signing_key = env.get(SIGNING_KEY_ENV, "")  # a key is used as given, spaces included
        return cls(
            bucket=value(BUCKET_ENV) or DEFAULT_BUCKET,
            signing_key=signing_key.encode() if signing_key else None,
            signing_key_block=value(SIGNING_KEY_BLOCK_ENV),
            allow_unsigned=parse_flag(value(ALLOW_UNSIGNED_ENV), ALLOW_UNSIGNED_ENV),
            io_retry_delays=parse_retry_delays(value(IO_RETRY_DELAYS_ENV)),
            work_pool=value(WORK_POOL_ENV) or DEFAULT_WORK_POOL,
            tlc_base_url=value(TLC_BASE_URL_ENV) or DEFAULT_TLC_BASE_URL,
            aws_access_key_id=value("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=value("AWS_SECRET_ACCESS_KEY"),
            s3_root_user=value(S3_ROOT_USER_ENV),
            s3_root_password=value(S3_ROOT_PASSWORD_ENV),
            prefect_api_auth_string=value(PREFECT_API_AUTH_STRING_ENV),
            prefect_api_url=value("PREFECT_API_URL"),
            alert_webhook_url=value(ALERT_WEBHOOK_URL_ENV),
            drift_thresholds=parse_drift_thresholds(value(DRIFT_THRESHOLDS_ENV)),
            set_aside_after_failures=parse_set_aside_after(value(SET_ASIDE_AFTER_FAILURES_ENV)),
            object_url_template=parse_object_url_template(value(OBJECT_URL_TEMPLATE_ENV)),
            download_max_bytes=parse_positive_whole(
                DOWNLOAD_MAX_BYTES_ENV, value(DOWNLOAD_MAX_BYTES_ENV), DEFAULT_DOWNLOAD_MAX_BYTES, "bytes"
            ),
            download_deadline_seconds=parse_positive_whole(
                DOWNLOAD_DEADLINE_ENV, value(DOWNLOAD_DEADLINE_ENV), DEFAULT_DOWNLOAD_DEADLINE_SECONDS, "seconds"
            ),
            allow_local_sources=parse_switch(ALLOW_LOCAL_SOURCES_ENV, value(ALLOW_LOCAL_SOURCES_ENV)),
            source_buckets=tuple(b.strip() for b in (value(SOURCE_BUCKETS_ENV) or "").split(",") if b.strip()),
            image=value(IMAGE_ENV),
            flow_network=value(FLOW_NETWORK_ENV),
            keep_failed_containers_hours=parse_positive_number(
                KEEP_FAILED_CONTAINERS_HOURS_ENV, value(KEEP_FAILED_CONTAINERS_HOURS_ENV), DEFAULT_KEEP_FAILED_CONTAINERS_HOURS
            ),
            container_sweep_seconds=parse_positive_number(
                CONTAINER_SWEEP_SECONDS_ENV, value(CONTAINER_SWEEP_SECONDS_ENV), DEFAULT_CONTAINER_SWEEP_SECONDS
            ),
        )

    @property
    def readable_buckets(self) -> tuple[str, ...]:
        """The buckets a deployment's run parameters may name as sources: TAXI_BUCKET and
        TAXI_SOURCE_BUCKETS."""
        return (self.bucket, *self.source_buckets)


def parse_flag(raw: str | None, name: str) -> bool:
    """1/true/yes -> True; 0/false/no or unset -> False; anything else is an error naming `name`."""
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def parse_retry_delays(raw: str | None) -> tuple[int, ...]:
    """Whole seconds from "2,10,30"; the defaults when unset."""
    if raw is None:
        return DEFAULT_IO_RETRY_DELAYS
    try:
        delays = tuple(int(part) for part in raw.split(","))
    except ValueError as error:
        raise ValueError(f"{IO_RETRY_DELAYS_ENV} must be comma-separated whole seconds, got {raw!r}") from error
    if any(d < 0 for d in delays):
        raise ValueError(f"{IO_RETRY_DELAYS_ENV} must not be negative, got {raw!r}")
    return delays


def parse_drift_thresholds(raw: str | None) -> dict[str, float]:
    """{"pickup_zone": 0.15, "default": 0.12} from "pickup_zone=0.15,default=0.12"; a lone
    number is the threshold of every statistic ({"default": value}); {} when unset. Each
    value is a Jensen-Shannon distance, in (0, 1]."""
    if raw is None:
        return {}
    if "=" not in raw:
        raw = f"{ALL_STATISTICS}={raw}"
    thresholds: dict[str, float] = {}
    for part in raw.split(","):
        name, _, text = (piece.strip() for piece in part.partition("="))
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not name or not 0 < number <= 1:
            raise ValueError(
                f"{DRIFT_THRESHOLDS_ENV} must be NAME=VALUE pairs separated by commas (or one value), "
                f"each value a number in (0, 1]; got {part.strip()!r}"
            )
        thresholds[name] = number
    return thresholds


def parse_set_aside_after(raw: str | None) -> int:
    """A whole number of failed runs, at least 1; the default when unset."""
    return parse_positive_whole(SET_ASIDE_AFTER_FAILURES_ENV, raw, DEFAULT_SET_ASIDE_AFTER_FAILURES, "failed runs")


def parse_positive_whole(name: str, raw: str | None, default: int, unit: str = "") -> int:
    """A whole number (of `unit`) of at least 1; `default` when unset."""
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a whole number{' of ' + unit if unit else ''}, at least 1; got {raw!r}")
    return number


def parse_switch(name: str, raw: str | None) -> bool:
    """true/false (also 1/0, yes/no); False when unset."""
    if raw is None:
        return False
    switch = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(raw.lower())
    if switch is None:
        raise ValueError(f"{name} must be true or false; got {raw!r}")
    return switch


def parse_positive_number(name: str, raw: str | None, default: float) -> float:
    """A number greater than 0 (decimals allowed); `default` when unset."""
    if raw is None:
        return default
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise ValueError(f"{name} must be a number greater than 0; got {raw!r}")
    return number


def parse_object_url_template(raw: str | None) -> str | None:
    """An http(s) URL with a {key} placeholder (and optionally {bucket}), or None when unset."""
    if raw is None:
        return None
    try:
        filled = raw.format(bucket="b", key="k")
    except (KeyError, IndexError, ValueError):
        filled = ""
    if not raw.startswith(("http://", "https://")) or "{key}" not in raw or not filled:
        raise ValueError(
            f"{OBJECT_URL_TEMPLATE_ENV} must be an http(s) URL with a {{key}} placeholder and no other than {{bucket}}, "
            "e.g. http://localhost:9001/browser/{bucket}/{key}"
        )
    return raw
