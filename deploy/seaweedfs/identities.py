"""SeaweedFS's S3 users for the stack: the root user, the flows' bucket-scoped user, the uploader.

Why this exists: the flows must not hold the S3 server's root credentials (with them, any flow
container could read or delete every bucket). SeaweedFS takes its users from an identities
file given at start (`weed mini -s3.config=FILE`); this writes that file from the environment
and then starts the server:

    python3 identities.py FILE weed mini ... -s3.config=FILE

- TAXI_S3_ROOT_USER / TAXI_S3_ROOT_PASSWORD: the admin (creates the bucket at setup);
- AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the flows' user, allowed to read, write and list
  the bucket TAXI_BUCKET (default taxi) and nothing else: no other bucket, no bucket creation;
- TAXI_S3_UPLOADER_USER / TAXI_S3_UPLOADER_PASSWORD (optional, both or neither): whoever drops
  trip files for the hourly job, allowed to write under incoming/ of that bucket only (no read,
  no list; SeaweedFS's Write also deletes there).

The file is written readable by the server's user only, and the keys are removed from the
environment before the server starts. Standard library only: it runs in the SeaweedFS image
(deploy/seaweedfs/Dockerfile), which has Python but not the project. The tests start a server
with `identities()` too (tests/integration/test_s3_users.py).
"""

from __future__ import annotations

import json
import os
import sys

# What the flows' user may do, on the project's bucket only (SeaweedFS's action names; Write
# includes deleting objects and multipart uploads).
FLOW_ACTIONS = ("Read", "Write", "List")
ROOT_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
# taxi.layout.INCOMING_PREFIX (this script cannot import the project).
UPLOAD_PREFIX = "incoming/"
VARIABLES = (
    "TAXI_S3_ROOT_USER",
    "TAXI_S3_ROOT_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
UPLOADER_VARIABLES = ("TAXI_S3_UPLOADER_USER", "TAXI_S3_UPLOADER_PASSWORD")


def identities(
    root_user: str,
    root_password: str,
    flows_key: str,
    flows_secret: str,
    bucket: str,
    uploader: tuple[str, str] | None = None,
) -> dict:
    """The `-s3.config` document: the root user (admin), the flows' user (one bucket) and, if
    given as (user, password), the uploader (writes under incoming/ of that bucket only)."""
    if flows_key == root_user:
        raise ValueError(
            "the flows' S3 key (AWS_ACCESS_KEY_ID) must differ from the root user (TAXI_S3_ROOT_USER)"
        )
    if uploader and uploader[0] in (root_user, flows_key):
        raise ValueError(
            "the uploader (TAXI_S3_UPLOADER_USER) must differ from the root and the flows' users"
        )
    uploaders = []
    if uploader:
        user, password = uploader
        uploaders.append(
            {
                "name": "taxi-uploader",
                "credentials": [{"accessKey": user, "secretKey": password}],
                "actions": [f"Write:{bucket}/{UPLOAD_PREFIX}*"],
            }
        )
    return {
        "identities": [
            {
                "name": "root",
                "credentials": [{"accessKey": root_user, "secretKey": root_password}],
                "actions": list(ROOT_ACTIONS),
            },
            {
                "name": "taxi-flows",
                "credentials": [{"accessKey": flows_key, "secretKey": flows_secret}],
                "actions": [f"{action}:{bucket}" for action in FLOW_ACTIONS],
            },
            *uploaders,
        ]
    }


def write_config(path: str, config: dict) -> None:
    """Write `config` as JSON readable by this user only (it holds secret keys)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(config, out)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: identities.py CONFIG_FILE COMMAND [ARG...]")
    path, command = argv[0], argv[1:]
    missing = [name for name in VARIABLES if not os.environ.get(name)]
    if missing:
        sys.exit(f"error: set {', '.join(missing)} (.env: bash scripts/make-env.sh)")
    values = [os.environ.pop(name) for name in VARIABLES]
    uploader = tuple(os.environ.pop(name, "") for name in UPLOADER_VARIABLES)
    if any(uploader) and not all(uploader):
        sys.exit(f"error: set both {' and '.join(UPLOADER_VARIABLES)}, or neither")
    bucket = os.environ.get("TAXI_BUCKET") or "taxi"
    try:
        config = identities(*values, bucket=bucket, uploader=uploader if all(uploader) else None)
    except ValueError as error:
        sys.exit(f"error: {error}")
    write_config(path, config)
    uploads = (
        f"uploader: Write on {bucket}/{UPLOAD_PREFIX} only" if all(uploader) else "no uploader"
    )
    print(
        f"S3 users: root (admin), the flows' user ({', '.join(FLOW_ACTIONS)} on bucket"
        f" {bucket!r} only), {uploads}",
        flush=True,
    )
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
