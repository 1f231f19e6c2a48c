"""S3 answers a real server cannot give on demand, injected into botocore's request path.

Everything else goes to the real S3 server: a hook only drops one header of one kind of request
(a server that ignores it) or answers one request for one key itself (an error). Hooks added to
boto3's default session reach every client made afterwards, so the flows' own ObjectStores get
them; hooks added to one client's `meta.events` reach that client only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.awsrequest import AWSResponse
from botocore.hooks import BaseEventHooks

Handler = Callable[..., Any]


@contextmanager
def s3_hook(event: str, handler: Handler, events: BaseEventHooks | None = None) -> Iterator[None]:
    """Register `handler` for botocore's `event` while the block runs (default: on boto3's
    default session, so on every client created meanwhile)."""
    emitter = events if events is not None else boto3._get_default_session().events
    emitter.register(event, handler)
    try:
        yield
    finally:
        emitter.unregister(event, handler)


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def error_for_key(
    operation: str, bucket: str, key: str, status: int, code: str
) -> tuple[str, Handler]:
    """(event, handler) that answers `operation` on bucket/key with an S3 error, unsent."""
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected</Message></Error>'.encode()

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if unquote(urlsplit(request.url).path) == f"/{bucket}/{key}":
            return AWSResponse(
                request.url, status, {"Content-Type": "application/xml"}, _Body(body)
            )
        return None

    return f"before-send.s3.{operation}", answer


def header_ignored(operation: str, header: str) -> tuple[str, Handler]:
    """(event, handler) that drops `header` from every `operation` request before it is signed
    and sent: the server then behaves exactly like one that ignores the header."""

    def drop(request: Any, **_: Any) -> None:
        if header in request.headers:
            del request.headers[header]

    return f"before-sign.s3.{operation}", drop
