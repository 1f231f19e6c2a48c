"""The project's storage errors, and the one place where botocore's exceptions become them.

`StorageError` (and its kinds below) has a message that names the bucket and key, never a
credential. Failures that may pass (the endpoint unreachable or timing out, a 5xx answer,
throttling) are `TransientStorageError`, the only kind worth retrying; any other answer (403, a
missing bucket, a key too long...) fails the same way every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as ConnectionFailure

# S3 error codes, by what they mean for the caller.
_NOT_FOUND = ("NoSuchKey", "404", "NotFound")
# 412 when a conditional write finds the object; 409 when another one to it is in flight.
_EXISTS = (
    "PreconditionFailed",
    "412",
    "ConditionalRequestConflict",
    "409",
    "BucketAlreadyOwnedByYou",
    "BucketAlreadyExists",
)
# Answers that say "not now" rather than "no" (botocore's own transient and throttling codes);
# any 5xx status counts too.
_TRANSIENT = (
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
)
# The server refused the credentials or what they may do, by S3 error code (HEAD requests
# get a bare 403 with no code). Named so that the run's error says what to check.
_ACCESS_REFUSED = {
    "SignatureDoesNotMatch": "the S3 server refused the credentials (SignatureDoesNotMatch): the secret key does not match the access key",
    "InvalidAccessKeyId": "the S3 server refused the credentials (InvalidAccessKeyId): it does not know the access key",
    "AccessDenied": "access denied by the S3 server (AccessDenied): the credentials lack the right to do this",
    "403": "access denied by the S3 server (HTTP 403): wrong credentials, or no right to do this",
}


class StorageError(RuntimeError):
    """An S3 operation failed; the message names the bucket and key."""


class TransientStorageError(StorageError):
    """S3 could not be reached or answered "not now" (timeout, 5xx, throttling) even after
    botocore's retries: trying again later may work."""


class NotFoundError(StorageError):
    """The object, or its bucket, does not exist."""


class BucketNotFoundError(NotFoundError):
    """The bucket itself does not exist (a setup or TAXI_BUCKET problem, not a missing object)."""


class AlreadyExistsError(StorageError):
    """A create-only write found the object (or bucket) already there."""


class IntegrityError(StorageError):
    """An object does not match the checksum recorded for it: it was altered or truncated."""


@contextmanager
def s3_errors(action: str, target: str, bucket: str, endpoint: str) -> Iterator[None]:
    """botocore's exceptions raised inside the block as the project's, naming what was being done
    (`action`) to what (`target`), and the bucket or endpoint when they are the problem."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            raise BucketNotFoundError(
                f"bucket {bucket!r} does not exist (cannot {action} {target})"
            ) from error
        if code in _NOT_FOUND:
            raise NotFoundError(f"{target} does not exist") from error
        if code in _EXISTS:
            raise AlreadyExistsError(f"cannot {action} {target}: it already exists") from error
        if code in _TRANSIENT or status >= 500:
            raise TransientStorageError(f"cannot {action} {target}: {error}") from error
        if code in _ACCESS_REFUSED:
            raise StorageError(
                f"cannot {action} {target}: {_ACCESS_REFUSED[code]}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from error
        raise StorageError(f"cannot {action} {target}: {error}") from error
    except (ConnectionFailure, HTTPClientError) as error:
        # Connection-level failures (refused, timed out, cut off) after botocore's own
        # retries: name the endpoint so the run's error says where S3 was expected.
        raise TransientStorageError(
            f"cannot {action} {target}: S3 endpoint {endpoint} unreachable ({error})"
        ) from error
    except BotoCoreError as error:  # no credentials, invalid parameters...: the same next time
        raise StorageError(f"cannot {action} {target}: {error}") from error
