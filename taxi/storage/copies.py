"""Copies of one object to a new key made by the S3 server itself, only while the source is still
the object that was read: its bytes never pass through this process, however large it is.

Up to MAX_SINGLE_COPY_BYTES one CopyObject, above it a multipart copy (UploadPartCopy per part),
S3's own limit on a single copy being 5 GiB. Every request carries the source's ETag
(x-amz-copy-source-if-match), so a source replaced or deleted meanwhile is never half-copied,
and the target is created only if absent (If-None-Match: *).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, suppress

from taxi.storage.errors import (
    AlreadyExistsError,
    BucketNotFoundError,
    IntegrityError,
    NotFoundError,
    StorageError,
    s3_errors,
)
from taxi.storage.objects import ObjectStore, quoted_etag

MAX_SINGLE_COPY_BYTES = 5 * 1024**3
# S3 takes parts of 5 MiB to 5 GiB, at most MAX_PARTS of them: a larger object gets larger parts.
COPY_PART_BYTES = 256 * 1024**2
MAX_PARTS = 10_000


class SourceChangedError(StorageError):
    """The source was replaced or deleted since its ETag was read: nothing was copied."""


def copy_unchanged(
    store: ObjectStore,
    source: str,
    target: str,
    etag: str,
    size: int,
    single_copy_max_bytes: int = MAX_SINGLE_COPY_BYTES,
    part_bytes: int = COPY_PART_BYTES,
) -> None:
    """Copy `source` (`size` bytes, ETag `etag`) to `target`, a key that must not exist yet,
    server-side. Raises SourceChangedError if the source no longer has `etag`, and
    AlreadyExistsError if `target` exists; on these and any other error no object is left at
    `target` (a multipart copy is aborted), and a copy whose size is not `size` is deleted
    (IntegrityError)."""
    try:
        if size <= single_copy_max_bytes:
            _copy_whole(store, source, target, etag)
        else:
            _copy_in_parts(store, source, target, etag, size, part_bytes)
    except BucketNotFoundError:
        raise
    except (AlreadyExistsError, NotFoundError) as error:
        # Both preconditions answer 412: tell a changed source from an existing target.
        if _source_changed(store, source, etag):
            raise SourceChangedError(
                f"{store.uri(source)} was replaced or deleted since it was listed: not copied"
            ) from error
        raise
    copied = store.size(target)
    if copied != size:
        store.delete(target)
        raise IntegrityError(
            f"the copy {store.uri(target)} of {store.uri(source)} has {copied} bytes, not {size}"
        )


def _copy_whole(store: ObjectStore, source: str, target: str, etag: str) -> None:
    with _errors(store, source, target):
        store.client.copy_object(
            Bucket=store.bucket,
            Key=target,
            CopySource={"Bucket": store.bucket, "Key": source},
            CopySourceIfMatch=quoted_etag(etag),
            IfNoneMatch="*",
        )


def _copy_in_parts(
    store: ObjectStore, source: str, target: str, etag: str, size: int, part_bytes: int
) -> None:
    client, bucket, condition = store.client, store.bucket, quoted_etag(etag)
    with _errors(store, source, target):
        head = client.head_object(Bucket=bucket, Key=source, IfMatch=condition)
        upload = client.create_multipart_upload(
            Bucket=bucket,
            Key=target,
            ContentType=head.get("ContentType", "application/octet-stream"),
            Metadata=head.get("Metadata", {}),
        )["UploadId"]
    part = max(part_bytes, -(-size // MAX_PARTS))
    try:
        with _errors(store, source, target):
            parts = []
            for number, start in enumerate(range(0, size, part), start=1):
                copied = client.upload_part_copy(
                    Bucket=bucket,
                    Key=target,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}",
                    CopySourceIfMatch=condition,
                )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=target,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
    except BaseException:
        # The parts copied so far stay stored (and billed) until the upload is aborted; if the
        # abort fails too, until an AbortIncompleteMultipartUpload lifecycle rule or a person
        # removes them.
        with suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=target, UploadId=upload)
        raise


def _source_changed(store: ObjectStore, source: str, etag: str) -> bool:
    try:
        return quoted_etag(store.etag(source)) != quoted_etag(etag)
    except NotFoundError:
        return True


def _errors(store: ObjectStore, source: str, target: str) -> AbstractContextManager[None]:
    target_text = f"{store.uri(source)} to {store.uri(target)}"
    return s3_errors("copy", target_text, store.bucket, store.client.meta.endpoint_url)
