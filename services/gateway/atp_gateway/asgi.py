"""Small raw-ASGI helpers for the request path: headers, bounded body reading and JSON or error replies."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from atp_common.errors import AtpError, Cancelled, PayloadTooLarge, Unavailable
from atp_gateway.errors import ErrorReply, error_reply

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["RequestHeaders", "read_body", "send_error", "send_json"]

JSON_CONTENT = (b"content-type", b"application/json")
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


class RequestHeaders:
    """The few request headers the gateway reads, found in one pass over the ASGI header list."""

    __slots__ = (
        "api_key",
        "authorization",
        "cache",
        "content_length",
        "end_user",
        "regions",
        "request_id",
        "tags",
    )

    def __init__(self, scope: Scope):
        authorization = api_key = request_id = content_length = end_user = tags = regions = cache = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"api-key" or name == b"x-api-key":
                api_key = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"x-atp-user":
                end_user = value
            elif name == b"x-atp-tags":
                tags = value
            elif name == b"x-atp-region":
                regions = value
            elif name == b"x-atp-cache":
                cache = value
        self.authorization: bytes | None = authorization
        self.api_key: bytes | None = api_key
        self.content_length: bytes | None = content_length
        self.end_user: bytes | None = end_user
        self.tags: bytes | None = tags
        self.regions: bytes | None = regions
        self.cache: bytes | None = cache
        # The caller's id when it is a sane token, so its logs and ours line up; otherwise a fresh one.
        if request_id is not None and _REQUEST_ID.fullmatch(request_id):
            self.request_id = request_id.decode()
        else:
            self.request_id = os.urandom(12).hex()


# A body larger than this counts against the process's BodyBudget; smaller ones (nearly all) pay nothing.
LARGE_BODY_BYTES = 1024 * 1024


class BodyBudget:
    """The bytes of large request bodies one process holds at once, from the start of their reading to
    the end of their request: the body limit allows media-sized bodies, and this bounds how many of them
    the process carries together (a new one past it is told to come back)."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self, body: bytes) -> int:
        """Reserve a read body's size when it is large (else 0); give it back when its request ends."""
        return self.take(len(body)) if len(body) > LARGE_BODY_BYTES else 0

    def take(self, size: int) -> int:
        """Reserve `size` bytes; Unavailable with Retry-After when they do not fit."""
        if self.held + size > self.limit:
            raise Unavailable(
                "Too many large request bodies are in flight on this gateway; retry shortly.", retry_after=1.0
            )
        self.held += size
        return size

    def give(self, size: int) -> None:
        self.held -= size


async def read_body(
    receive: Receive, content_length: bytes | None, limit: int, budget: BodyBudget | None = None
) -> bytes:
    """The request body, refused with PayloadTooLarge as soon as it exceeds `limit` (never buffered past it).

    A body that arrives in parts holds its size in `budget` while it is read; the request's own hold of
    the whole body, where it takes one, follows."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Cancelled("client disconnected")
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        return body
    chunks = [body]
    size = len(body)
    reserved = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Cancelled("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
            if budget is not None and size - reserved >= LARGE_BODY_BYTES:
                # Reserved a megabyte or more at a time: small bodies never touch the budget.
                reserved += budget.take(size - reserved)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        if reserved:
            budget.give(reserved)  # type: ignore[union-attr]


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete JSON reply."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_CONTENT, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: AtpError, headers: list[tuple[bytes, bytes]]) -> ErrorReply:
    """The OpenAI-format error reply for `exc`; returns it so the caller can count its status."""
    reply = error_reply(exc)
    await send_json(send, reply.status, reply.body, [*headers, *reply.headers])
    return reply
