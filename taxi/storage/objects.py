"""The S3 object store: plain objects in one bucket (get, put-verified, list, delete, and the
conditional writes). Every call runs inside taxi.storage.errors.s3_errors, so botocore's
exceptions reach the caller as the project's storage errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from taxi.layout import parse_s3_uri, s3_uri
from taxi.settings import Settings
from taxi.storage.errors import (
    AlreadyExistsError,
    BucketNotFoundError,
    IntegrityError,
    NotFoundError,
    s3_errors,
)

# Bounds on one S3 call: botocore retries a transient failure S3_RETRIES times (the client
# config's `max_attempts` counts retries, not tries: a call is tried S3_RETRIES + 1 = 4 times),
# each try waiting at most S3_CONNECT_TIMEOUT for a connection and S3_READ_TIMEOUT for each
# socket read. Its "standard" mode waits a random 0-0.05, 0-0.1, 0-0.2 s between tries (0-1,
# 0-2, 0-4 s after throttling). A call to an endpoint whose connections time out thus fails
# within about 4 * 5 = 20 s; the flows' task retries multiply that (docs/reliability.md,
# "S3 outages", measured by benchmarks/s3_outage.py).
S3_RETRIES = 3
S3_ATTEMPTS = S3_RETRIES + 1
S3_CONNECT_TIMEOUT = 5
S3_READ_TIMEOUT = 30
# Objects are read back for checking in pieces of this size, never whole.
READ_BACK_CHUNK_BYTES = 1024 * 1024


# The content type of objects written without one of their own.
BINARY = "application/octet-stream"


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
            retries={"max_attempts": S3_RETRIES, "mode": "standard"},
            connect_timeout=S3_CONNECT_TIMEOUT,
            read_timeout=S3_READ_TIMEOUT,
        ),
    )


def quoted_etag(etag: str) -> str:
    """An ETag as S3 sends it in headers and compares it: in double quotes (listings are
    sometimes read without them)."""
    return etag if etag.startswith('"') else f'"{etag}"'


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
        """Create the bucket unless it exists (idempotent; created meanwhile by someone else
        is fine too)."""
        if not self._bucket_exists():
            with suppress(AlreadyExistsError), self._errors("create", f"bucket {self.bucket!r}"):
                self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, body: bytes, content_type: str = BINARY) -> str:
        """Write one object and return its sha256."""
        with self._errors("write", self.uri(key)):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return sha256_hex(body)

    def put_verified(self, key: str, body: bytes, content_type: str = BINARY) -> str:
        """Write an object, read it back, and fail unless the bytes stored are the bytes sent."""
        expected = self.put(key, body, content_type)
        self._check_stored(key, expected)
        return expected

    def put_file_verified(
        self, key: str, path: Path, sha256: str, content_type: str = BINARY
    ) -> None:
        """put_verified for a file too large to hold in memory twice: the upload streams from
        the file, and the read-back is hashed in chunks. `sha256` is the file's, computed by
        the caller as it wrote the file; IntegrityError unless the stored object has it."""
        with open(path, "rb") as body, self._errors("write", self.uri(key)):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        self._check_stored(key, sha256)

    def stored_sha256(self, key: str) -> str:
        """The sha256 of an object's bytes, read in chunks."""
        digest = hashlib.sha256()
        for chunk in self.chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def chunks(self, key: str, chunk_bytes: int = READ_BACK_CHUNK_BYTES) -> Iterator[bytes]:
        """An object's bytes in pieces of at most `chunk_bytes`, never whole; the GET is made
        when the first piece is asked for."""
        with self._errors("read", self.uri(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(chunk_bytes)
            finally:
                body.close()

    def size(self, key: str) -> int:
        """An object's size in bytes, from a HEAD request (nothing of it is read)."""
        with self._errors("check", self.uri(key)):
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def _check_stored(self, key: str, expected: str) -> None:
        stored = self.stored_sha256(key)
        if stored != expected:
            raise IntegrityError(
                f"{self.uri(key)} read back with sha256 {stored}, wrote {expected}"
            )

    def put_if_absent(
        self, key: str, body: bytes, content_type: str = "application/json"
    ) -> str | None:
        """Create an object only if no object has that key (S3 conditional write,
        If-None-Match: *). Returns the new object's ETag, or None when it already exists: of
        two writers racing for the same key exactly one wins, which is what a claim on a piece
        of work needs (on a server that honours the condition: see taxi.incoming's probe)."""
        return self._put_conditionally(key, body, content_type, "create", IfNoneMatch="*")

    def replace_if_unchanged(
        self, key: str, body: bytes, etag: str, content_type: str = "application/json"
    ) -> str | None:
        """Overwrite an object only while it is still the one with ETag `etag` (If-Match).
        Returns the new object's ETag, or None when it was replaced or deleted meanwhile."""
        return self._put_conditionally(key, body, content_type, "replace", IfMatch=etag)

    def put_if_unchanged(
        self, key: str, body: bytes, etag: str | None, content_type: str = "application/json"
    ) -> bool:
        """Write an object only if it is still as last read: with the ETag read (If-Match), or
        absent when `etag` is None (If-None-Match: *). Returns False when another writer
        changed, created or deleted it meanwhile: read it again and decide again."""
        if etag is None:
            return self.put_if_absent(key, body, content_type) is not None
        return self.replace_if_unchanged(key, body, etag, content_type) is not None

    def _put_conditionally(
        self, key: str, body: bytes, content_type: str, action: str, **condition: str
    ) -> str | None:
        try:
            with self._errors(action, self.uri(key)):
                written = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **condition
                )
        except BucketNotFoundError:
            raise
        # 412 (or 409: another conditional write in flight; 404 from AWS for If-Match on an
        # object deleted meanwhile): not the object we expected any more.
        except (AlreadyExistsError, NotFoundError):
            return None
        return str(written["ETag"])

    def delete_if_unchanged(self, key: str, etag: str) -> bool:
        """Delete an object only while it is still the one with ETag `etag` (If-Match on
        DELETE). Returns False when it was replaced or deleted meanwhile."""
        try:
            with self._errors("delete", self.uri(key)):
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except BucketNotFoundError:
            raise
        except (AlreadyExistsError, NotFoundError):  # 412 (or 404 when already gone)
            return False
        return True

    def delete_if_still(self, key: str, etag: str) -> bool:
        """Delete an object only while it has ETag `etag`: its ETag is compared just before
        (HEAD) and the DELETE carries If-Match, so a server that ignores If-Match on DELETE
        (taxi.incoming.check_conditional_writes) leaves only the time between the two requests
        for a new write to be lost. Returns False when it was replaced or deleted meanwhile."""
        try:
            if quoted_etag(self.etag(key)) != quoted_etag(etag):
                return False
        except NotFoundError as error:
            if isinstance(error, BucketNotFoundError):
                raise
            return False
        return self.delete_if_unchanged(key, quoted_etag(etag))

    def etag(self, key: str) -> str:
        with self._errors("check", self.uri(key)):
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])

    def get(self, key: str) -> bytes:
        with self._errors("read", self.uri(key)):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (for put_if_unchanged), or None if there is no such object."""
        try:
            with self._errors("read", self.uri(key)):
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                return response["Body"].read(), response["ETag"]
        except NotFoundError as error:
            if isinstance(error, BucketNotFoundError):
                raise
            return None

    def exists(self, key: str) -> bool:
        try:
            with self._errors("check", self.uri(key)):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFoundError:
            # HEAD answers a bare 404 for a missing bucket too: tell the two apart, so that a
            # wrong TAXI_BUCKET is named as such rather than read as "no such object".
            self._check_bucket_exists(f"check {self.uri(key)}")
            return False
        return True

    def _check_bucket_exists(self, action: str) -> None:
        """BucketNotFoundError naming the bucket unless it exists."""
        if not self._bucket_exists():
            raise BucketNotFoundError(f"bucket {self.bucket!r} does not exist (cannot {action})")

    def _bucket_exists(self) -> bool:
        try:
            with self._errors("access", f"bucket {self.bucket!r}"):
                self.client.head_bucket(Bucket=self.bucket)
        except NotFoundError:
            return False
        return True

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object under `prefix` as S3 reports it (Key, Size, ETag, LastModified)."""
        objects: list[ObjectInfo] = []
        with self._errors("list", self.uri(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                objects.extend(page.get("Contents", []))
        return objects

    def list_keys(self, prefix: str) -> list[str]:
        return [item["Key"] for item in self.list_objects(prefix)]

    def delete(self, key: str) -> None:
        """Delete one object; deleting an absent object is not an error in S3."""
        with self._errors("delete", self.uri(key)):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _errors(self, action: str, target: str) -> AbstractContextManager[None]:
        """botocore's exceptions as the project's, naming what was being done to what."""
        return s3_errors(action, target, self.bucket, self.client.meta.endpoint_url)


def open_s3_uri(uri: str) -> tuple[int, Iterator[bytes]]:
    """The size of s3://bucket/key (HEAD) and its bytes in chunks (GET, made only when they
    are iterated), with a client from the environment: taxi.sources' S3Opener, so that a
    source over the size cap is refused before any of it is read. A missing object raises
    FileNotFoundError."""
    bucket, key = parse_s3_uri(uri)
    store = ObjectStore(bucket=bucket)
    try:
        return store.size(key), store.chunks(key)
    except NotFoundError as error:
        raise FileNotFoundError(str(error)) from error
