"""The S3 object store: plain objects in one bucket, and the project's storage errors.

This is the one place where botocore's exceptions become the project's: `StorageError` (and
its kinds below) with a message that names the bucket and key, never a credential.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taxi.layout import parse_s3_uri, s3_uri
from taxi.settings import Settings

# Bounds on one S3 call: at most S3_MAX_ATTEMPTS tries (botocore's "standard" retry mode
# backs off up to 2**n seconds between them), each waiting at most S3_CONNECT_TIMEOUT for a
# connection and S3_READ_TIMEOUT for each socket read. A dead endpoint thus fails a call in
# at most about 3 * 5 + 1 + 2 = 18 s; the flows' task retries multiply that (see
# taxi/settings.py for the whole-run figure).
S3_MAX_ATTEMPTS = 3
S3_CONNECT_TIMEOUT = 5
S3_READ_TIMEOUT = 30
# Objects are read back for checking in pieces of this size, never whole.
READ_BACK_CHUNK_BYTES = 1024 * 1024

# S3 error codes, by what they mean for the caller.
_NOT_FOUND = ("NoSuchKey", "NoSuchBucket", "404", "NotFound")
# 412 when a conditional write finds the object; 409 when another one to it is in flight.
_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "BucketAlreadyOwnedByYou", "BucketAlreadyExists")


class StorageError(RuntimeError):
    """An S3 operation failed; the message names the bucket and key."""


class NotFoundError(StorageError):
    """The object, or its bucket, does not exist."""


class AlreadyExistsError(StorageError):
    """A create-only write found the object (or bucket) already there."""


class IntegrityError(StorageError):
    """An object does not match the checksum recorded for it: it was altered or truncated."""


class ObjectInfo(TypedDict):
    """One object of a listing, as S3 reports it."""

    Key: str
    Size: int
    ETag: str
    LastModified: datetime


def s3_client(access_key: str | None = None, secret_key: str | None = None) -> BaseClient:
    """A boto3 S3 client configured from the standard AWS_* environment variables (or with the
    keys given: the stack's setup acts as the S3 server's root user, the flows never do).

    Path-style addressing because MinIO and other self-hosted servers do not resolve
    bucket subdomains; bounded timeouts and retries so a dead endpoint fails the run in
    seconds rather than hanging it."""
    return boto3.client(
        "s3",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
            connect_timeout=S3_CONNECT_TIMEOUT,
            read_timeout=S3_READ_TIMEOUT,
        ),
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bucket_from_settings() -> str:
    return Settings.from_env().bucket


@dataclass
class ObjectStore:
    """Objects in one bucket (default: TAXI_BUCKET, read when the store is made)."""

    bucket: str = field(default_factory=_bucket_from_settings)
    client: BaseClient = field(default_factory=s3_client)

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (idempotent)."""
        target = f"bucket {self.bucket!r}"
        try:
            with self._errors("access", target):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except NotFoundError:
            pass
        try:
            with self._errors("create", target):
                self.client.create_bucket(Bucket=self.bucket)
        except AlreadyExistsError:  # created meanwhile by someone else: fine
            pass

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write one object and return its sha256."""
        with self._errors("write", self.uri(key)):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return sha256_hex(body)

    def put_verified(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write an object, read it back, and fail unless the bytes stored are the bytes sent."""
        expected = self.put(key, body, content_type)
        self._check_stored(key, expected)
        return expected

    def put_file_verified(self, key: str, path: Path, sha256: str, content_type: str = "application/octet-stream") -> None:
        """put_verified for a file too large to hold in memory twice: the upload streams from
        the file, and the read-back is hashed in chunks. `sha256` is the file's, computed by
        the caller as it wrote the file; IntegrityError unless the stored object has it."""
        with open(path, "rb") as body, self._errors("write", self.uri(key)):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        self._check_stored(key, sha256)

    def stored_sha256(self, key: str) -> str:
        """The sha256 of an object's bytes, read in chunks."""
        digest = hashlib.sha256()
        with self._errors("read", self.uri(key)):
            for chunk in self.client.get_object(Bucket=self.bucket, Key=key)["Body"].iter_chunks(READ_BACK_CHUNK_BYTES):
                digest.update(chunk)
        return digest.hexdigest()

    def _check_stored(self, key: str, expected: str) -> None:
        stored = self.stored_sha256(key)
        if stored != expected:
            raise IntegrityError(f"{self.uri(key)} read back with sha256 {stored}, wrote {expected}")

    def put_if_absent(self, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Create an object only if no object has that key (S3 conditional write,
        If-None-Match: *). Returns False when it already exists: of two writers racing for
        the same key exactly one wins, which is what a claim on a piece of work needs."""
        try:
            with self._errors("create", self.uri(key)):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
        except AlreadyExistsError:
            return False
        return True

    def get(self, key: str) -> bytes:
        with self._errors("read", self.uri(key)):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            with self._errors("check", self.uri(key)):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFoundError:
            return False
        return True

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object under `prefix` as S3 reports it (Key, Size, ETag, LastModified)."""
        objects: list[ObjectInfo] = []
        with self._errors("list", self.uri(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                objects.extend(page.get("Contents", []))
        return objects

    def list_keys(self, prefix: str) -> list[str]:
        return [item["Key"] for item in self.list_objects(prefix)]

    def delete(self, key: str) -> None:
        """Delete one object; deleting an absent object is not an error in S3."""
        with self._errors("delete", self.uri(key)):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    @contextmanager
    def _errors(self, action: str, target: str) -> Iterator[None]:
        """botocore's exceptions as the project's, naming what was being done to what."""
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                raise NotFoundError(f"bucket {self.bucket!r} does not exist (cannot {action} {target})") from error
            if code in _NOT_FOUND:
                raise NotFoundError(f"{target} does not exist") from error
            if code in _EXISTS:
                raise AlreadyExistsError(f"cannot {action} {target}: it already exists") from error
            raise StorageError(f"cannot {action} {target}: {error}") from error
        except BotoCoreError as error:
            # Connection-level failures (refused, timed out, cut off) after botocore's own
            # retries: name the endpoint so the run's error says where S3 was expected.
            endpoint = self.client.meta.endpoint_url
            raise StorageError(f"cannot {action} {target}: S3 endpoint {endpoint} unreachable ({error})") from error


def read_s3_uri(uri: str) -> bytes:
    """The bytes of s3://bucket/key, with a client from the environment. A missing object
    raises FileNotFoundError: the contract of taxi.tlc.load_data's S3 reader."""
    bucket, key = parse_s3_uri(uri)
    try:
        return ObjectStore(bucket=bucket).get(key)
    except NotFoundError as error:
        raise FileNotFoundError(str(error)) from error
