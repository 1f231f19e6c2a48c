"""Create the project's bucket as the S3 server's root user (the stack's SeaweedFS setup).

Why this exists: the flows' own S3 user may read, write and list the project's bucket but not
create it (nor any other), so the bucket is made once here with the root credentials, which
stay with the S3 server and this setup. With SeaweedFS the users themselves come from the
identities file the server starts with (deploy/seaweedfs/identities.py); with MinIO,
deploy/minio/setup.sh creates the bucket, the flows' user and its policy with `mc`.

Usage (needs AWS_ENDPOINT_URL, TAXI_S3_ROOT_USER, TAXI_S3_ROOT_PASSWORD, TAXI_BUCKET):
    python -m deploy.s3_setup
"""

from __future__ import annotations

import sys

from taxi.settings import S3_ROOT_PASSWORD_ENV, S3_ROOT_USER_ENV, Settings
from taxi.storage.objects import ObjectStore, s3_client


def main() -> None:
    settings = Settings.from_env()
    if not (settings.s3_root_user and settings.s3_root_password):
        sys.exit(
            f"error: set {S3_ROOT_USER_ENV} and {S3_ROOT_PASSWORD_ENV} (the S3 server's root user)"
        )
    root = s3_client(settings.s3_root_user, settings.s3_root_password.get_secret_value())
    ObjectStore(bucket=settings.bucket, client=root).ensure_bucket()
    print(
        f"bucket {settings.bucket!r} ready (the flows' user may read, write and list it, nothing else)"
    )


if __name__ == "__main__":
    main()
