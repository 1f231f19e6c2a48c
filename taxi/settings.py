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

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BUCKET = "taxi"
DEFAULT_WORK_POOL = "taxi-docker"
# The TLC's public folder of monthly trip files.
DEFAULT_TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
# Three retries, 2 + 10 + 30 s apart: with botocore's bounds on one S3 call
# (taxi.storage.objects: at most ~18 s against an endpoint that never answers, ~3 s against
# one that refuses), a dead S3 endpoint fails an I/O task in at most 4 x 18 + 42 = 114 s,
# and in about 55 s when connections are refused.
DEFAULT_IO_RETRY_DELAYS: tuple[int, ...] = (2, 10, 30)

BUCKET_ENV = "TAXI_BUCKET"
SIGNING_KEY_ENV = "TAXI_SIGNING_KEY"
SIGNING_KEY_BLOCK_ENV = "TAXI_SIGNING_KEY_BLOCK"
IO_RETRY_DELAYS_ENV = "TAXI_IO_RETRY_DELAYS"
WORK_POOL_ENV = "TAXI_WORK_POOL"
TLC_BASE_URL_ENV = "TAXI_TLC_BASE_URL"
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
            io_retry_delays=parse_retry_delays(value(IO_RETRY_DELAYS_ENV)),
            work_pool=value(WORK_POOL_ENV) or DEFAULT_WORK_POOL,
            tlc_base_url=value(TLC_BASE_URL_ENV) or DEFAULT_TLC_BASE_URL,
            aws_access_key_id=value("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=value("AWS_SECRET_ACCESS_KEY"),
            prefect_api_url=value("PREFECT_API_URL"),
        )


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
