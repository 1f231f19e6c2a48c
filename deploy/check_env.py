"""Refuse to start the compose stack with missing, short or placeholder secrets.

Why this exists: `.env.example` is public, so a stack started with its values (or with a
secret left empty) would have a Prefect API and an S3 server anyone can log in to. The
`check-env` one-shot of docker-compose.yml runs this first; the servers and every other
service wait for it to succeed. It names the variable at fault, never a value.

Usage: python -m deploy.check_env   (reads PREFECT_API_AUTH_STRING, TAXI_S3_ROOT_USER,
TAXI_S3_ROOT_PASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, if set,
TAXI_S3_UPLOADER_USER, TAXI_S3_UPLOADER_PASSWORD)
"""

from __future__ import annotations

import sys

from taxi.settings import (
    PREFECT_API_AUTH_STRING_ENV,
    S3_ROOT_PASSWORD_ENV,
    S3_ROOT_USER_ENV,
    S3_UPLOADER_PASSWORD_ENV,
    S3_UPLOADER_USER_ENV,
    Settings,
    secret_value,
)

# Every secret of .env.example contains this; scripts/make-env.sh replaces them all.
PLACEHOLDER_MARK = "change-me"
MIN_SECRET_CHARACTERS = 16


def _secret_problem(name: str, value: str | None) -> str | None:
    if not value:
        return f"{name} is not set"
    if PLACEHOLDER_MARK in value.lower():
        return f"{name} is still the placeholder of .env.example"
    if len(value) < MIN_SECRET_CHARACTERS:
        return f"{name} is shorter than {MIN_SECRET_CHARACTERS} characters"
    return None


def problems(settings: Settings) -> list[str]:
    """What is wrong with the stack's secrets in `settings` (empty: nothing)."""
    auth = secret_value(settings.prefect_api_auth_string)
    root_password = secret_value(settings.s3_root_password)
    secret_key = secret_value(settings.aws_secret_access_key)
    found: list[str] = []
    user, colon, password = (auth or "").partition(":")
    if auth and not (user and colon):
        found.append(f"{PREFECT_API_AUTH_STRING_ENV} must be USER:PASSWORD")
    else:
        found.append(
            _secret_problem(
                f"the password in {PREFECT_API_AUTH_STRING_ENV}", password if auth else None
            )
        )
    if not settings.s3_root_user:
        found.append(f"{S3_ROOT_USER_ENV} is not set")
    found.append(_secret_problem(S3_ROOT_PASSWORD_ENV, root_password))
    if not settings.aws_access_key_id:
        found.append("AWS_ACCESS_KEY_ID is not set")
    found.append(_secret_problem("AWS_SECRET_ACCESS_KEY", secret_key))
    if settings.aws_access_key_id and settings.aws_access_key_id == settings.s3_root_user:
        found.append(
            f"AWS_ACCESS_KEY_ID (the flows' S3 user) must not be the root user {S3_ROOT_USER_ENV}"
        )
    if secret_key and secret_key == root_password:
        found.append(f"AWS_SECRET_ACCESS_KEY must differ from {S3_ROOT_PASSWORD_ENV}")
    found.extend(_uploader_problems(settings))
    return [problem for problem in found if problem]


def _uploader_problems(settings: Settings) -> list[str | None]:
    """The optional uploader's keys: both or neither, a real secret, a user of its own."""
    user, password = settings.s3_uploader_user, secret_value(settings.s3_uploader_password)
    if not (user or password):
        return []
    both = f"(set both {S3_UPLOADER_USER_ENV} and {S3_UPLOADER_PASSWORD_ENV}, or neither)"
    found = [
        None if user else f"{S3_UPLOADER_USER_ENV} is not set {both}",
        _secret_problem(S3_UPLOADER_PASSWORD_ENV, password),
    ]
    if user and user in (settings.s3_root_user, settings.aws_access_key_id):
        found.append(
            f"{S3_UPLOADER_USER_ENV} must differ from {S3_ROOT_USER_ENV} and AWS_ACCESS_KEY_ID"
        )
    others = (secret_value(settings.s3_root_password), secret_value(settings.aws_secret_access_key))
    if password and password in others:
        found.append(
            f"{S3_UPLOADER_PASSWORD_ENV} must differ from {S3_ROOT_PASSWORD_ENV} and AWS_SECRET_ACCESS_KEY"
        )
    return found


def main() -> None:
    found = problems(Settings.from_env())
    if found:
        print(
            "error: refusing to start the stack: "
            + "; ".join(found)
            + ". Write a .env with generated secrets: bash scripts/make-env.sh",
            file=sys.stderr,
            flush=True,
        )
        # 78: EX_CONFIG, a configuration error (restarting will not help).
        sys.exit(78)
    print("stack settings checked: no placeholder or missing secrets", flush=True)


if __name__ == "__main__":
    main()
