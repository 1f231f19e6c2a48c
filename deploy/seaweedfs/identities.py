"""SeaweedFS's S3 users for the stack: the root user and the flows' own, bucket-scoped user.

Why this exists: the flows must not hold the S3 server's root credentials (with them, any flow
container could read or delete every bucket). SeaweedFS takes its users from an identities
file given at start (`weed mini -s3.config=FILE`); this writes that file from the environment
and then starts the server:

    python3 identities.py FILE weed mini ... -s3.config=FILE

- TAXI_S3_ROOT_USER / TAXI_S3_ROOT_PASSWORD: the admin (creates the bucket at setup);
- AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the flows' user, allowed to read, write and list
  the bucket TAXI_BUCKET (default taxi) and nothing else: no other bucket, no bucket creation.

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
VARIABLES = (
    "TAXI_S3_ROOT_USER",
    "TAXI_S3_ROOT_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def identities(
    root_user: str, root_password: str, flows_key: str, flows_secret: str, bucket: str
) -> dict:
    """The `-s3.config` document: the root user (admin) and the flows' user (one bucket)."""
    if flows_key == root_user:
        raise ValueError(
            "the flows' S3 key (AWS_ACCESS_KEY_ID) must differ from the root user (TAXI_S3_ROOT_USER)"
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
    bucket = os.environ.get("TAXI_BUCKET") or "taxi"
    try:
        config = identities(*values, bucket=bucket)
    except ValueError as error:
        sys.exit(f"error: {error}")
    write_config(path, config)
    print(
        f"S3 users: root (admin) and the flows' user ({', '.join(FLOW_ACTIONS)} on bucket {bucket!r} only)",
        flush=True,
    )
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
