"""One exchange for every HTTP dialect: authenticate, read, parse, call the adapters, encode the reply."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import AtpError, Cancelled, Internal, InvalidArgument, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, read_body, send_json
from atp_gateway.auth import Principal, api_key_from_headers
from atp_gateway.cache_serve import copied_reply, report_hit, send_copy
from atp_gateway.errors import (
    ErrorReply,
    error_from_generate,
    error_from_rpc,
    error_reply,
    openai_error,
    param_as_sent,
)
from atp_gateway.gateway import Gateway
from atp_gateway.reply_headers import add_limit_headers, add_route_headers
from atp_gateway.upstream import AdaptersClient
from atp_gateway.upstream_call import ClientGone, UpstreamCall, complete, first_message

log = logging.getLogger("atp.gateway.exchange")

__all__ = [
    "SSE_HEADERS",
    "Caller",
    "Dialect",
    "ReplyEncoder",
    "admit",
    "serve",
    "stamp",
]

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies such as nginx buffer responses unless told not to; a buffered stream is no stream.
    (b"x-accel-buffering", b"no"),
)
CLIENT_GONE = 499
CACHE_MODES = frozenset(("use", "refresh", "no-store"))
MAX_REGIONS = 8
_REGION = re.compile(r"[A-Za-z0-9*?_.\-]{1,64}")
# x-atp-tags: a few short pairs, so a header cannot grow an observation without bound.
MAX_TAGS = 16
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256


@dataclass(slots=True)
class Caller:
    """Who sent the request: the authenticated key, the request id and the request's headers."""

    principal: Principal
    request_id: str
    headers: RequestHeaders
    scope: Scope

    def header(self, name: bytes) -> bytes | None:
        """A request header the exchange does not read itself (a dialect's own, e.g. anthropic-version)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value  # type: ignore[no-any-return]
        return None


class ReplyEncoder(Protocol):
    """A dialect's reply writer for one request; the exchange calls it with the adapters' typed reply."""

    def whole(self, reply: adapters_pb2.GenerateResponse) -> bytes:
        """The JSON body of a non-streamed reply (header, every delta and the completion in `reply`)."""

    def start(self, header: adapters_pb2.GenerateHeader) -> bytes:
        """A stream's first bytes (may be empty), sent with the first deltas."""

    def deltas(self, deltas: Sequence[chat_pb2.Delta]) -> bytes:
        """The events for the deltas of one Generate message (empty when they carry nothing)."""

    def finish(self, completion: adapters_pb2.GenerateCompletion) -> bytes:
        """The closing events of a stream that completed."""

    def broken(self, error: AtpError) -> bytes:
        """The terminal event of a stream that broke after output."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """One client API over the exchange.

    `parse` turns the body into the Generate request (model, messages, params, stream, include_usage)
    and the encoder of its reply; it raises AtpError (InvalidArgument naming the JSON path) on bad
    input. The exchange then stamps tenant, key, request id, dialect, end user and tags (`stamp`).
    `error_reply` writes an error in the dialect's own shape (default: OpenAI's).
    """

    name: str
    parse: Callable[[bytes, Caller], tuple[adapters_pb2.GenerateRequest, ReplyEncoder]]
    error_reply: Callable[[AtpError], ErrorReply] = error_reply
    stream_headers: tuple[tuple[bytes, bytes], ...] = SSE_HEADERS
    # The metrics label of the endpoint; the dialect's name when empty.
    endpoint: str = ""


async def send_error(
    send: Send,
    dialect: Dialect,
    exc: AtpError,
    headers: list[tuple[bytes, bytes]],
    request: adapters_pb2.GenerateRequest | None = None,
) -> int:
    """The dialect's error reply for `exc` (naming the parameters `request` set); returns its status."""
    if request is not None:
        exc = param_as_sent(exc, request.params)
    reply = dialect.error_reply(exc)
    await send_json(send, reply.status, reply.body, [*headers, *reply.headers])
    return reply.status


async def admit(gateway: Gateway, headers: RequestHeaders, receive: Receive) -> tuple[Principal, bytes]:
    """The checks every request passes before its body is parsed: not draining, a valid key, a body
    within the size limit."""
    if gateway.stopping.is_set():
        raise Unavailable("The gateway is shutting down; retry on another replica.", retry_after=1.0)
    principal = gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
    body = await read_body(
        receive, headers.content_length, gateway.settings.max_body_bytes, gateway.body_budget
    )
    return principal, body


def parse_tags(raw: bytes) -> dict[str, str]:
    """x-atp-tags: `k=v,k=v`, bounded in count and size."""
    tags: dict[str, str] = {}
    for pair in raw.decode("utf-8", "replace").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(
                f"x-atp-tags takes k=v pairs (keys up to {MAX_TAG_KEY} characters, values up to "
                f"{MAX_TAG_VALUE}).",
                param="x-atp-tags",
            )
        tags[key] = value
        if len(tags) > MAX_TAGS:
            raise InvalidArgument(f"x-atp-tags takes at most {MAX_TAGS} pairs.", param="x-atp-tags")
    return tags


def stamp(request: adapters_pb2.GenerateRequest, caller: Caller, dialect: str) -> None:
    """What every dialect's request carries besides the body: who asks, for whom, and with what tags.

    The end user is the x-atp-user header, else the body's user, else its safety_identifier; tags are
    the body's metadata with the x-atp-tags header's pairs over them.
    """
    request.request_id = caller.request_id
    principal = caller.principal
    request.tenant = principal.tenant
    request.key_id = principal.key_id
    request.dialect = dialect
    headers = caller.headers
    params = request.params
    if headers.end_user is not None:
        end_user = headers.end_user.decode("utf-8", "replace")
        if len(end_user) > 256:
            raise InvalidArgument("x-atp-user is limited to 256 characters.", param="x-atp-user")
        request.end_user = end_user
    elif end_user := params.user or params.safety_identifier:
        request.end_user = end_user
    if metadata := params.metadata:
        request.tags.update(metadata)
    if headers.tags is not None:
        request.tags.update(parse_tags(headers.tags))
    if headers.regions is not None:
        request.regions.extend(parse_regions(headers.regions))
    if headers.cache is not None:
        mode = headers.cache.decode("ascii", "replace").strip().lower()
        if mode not in CACHE_MODES:
            raise InvalidArgument("x-atp-cache takes use, refresh or no-store.", param="x-atp-cache")
        request.cache = mode


def parse_regions(raw: bytes) -> list[str]:
    """x-atp-region: comma-separated region patterns (`eu-*`, `westeurope`), a few short ones."""
    patterns = [p.strip() for p in raw.decode("ascii", "replace").split(",") if p.strip()]
    if not patterns or len(patterns) > MAX_REGIONS or not all(_REGION.fullmatch(p) for p in patterns):
        raise InvalidArgument(
            f"x-atp-region takes up to {MAX_REGIONS} comma-separated region patterns (letters, digits, "
            "'-', '_', '.', '*').",
            param="x-atp-region",
        )
    return patterns


async def serve(dialect: Dialect, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole exchange for one HTTP request; never raises (every failure becomes the dialect's error
    reply or terminal event)."""
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    status = 500
    metrics.IN_FLIGHT_HTTP.inc()
    try:
        status = await _serve(dialect, gateway, scope, headers, reply_headers, receive, send, started)
    except (ClientGone, OSError):
        # OSError: writing to a client that went away (uvicorn raises ClientDisconnected).
        status = CLIENT_GONE
        metrics.DISCONNECTS.inc()
    except Exception:
        # A bug: logged with its traceback here, never shown to the client.
        log.exception("request failed", extra={"request_id": headers.request_id})
        status = 500
        with contextlib.suppress(Exception):
            # Fails harmlessly when the reply had already started.
            await send_error(send, dialect, Internal("internal error"), reply_headers)
    finally:
        metrics.IN_FLIGHT_HTTP.dec()
        metrics.observe(dialect.endpoint or dialect.name, status, time.perf_counter() - started)


async def _serve(
    dialect: Dialect,
    gateway: Gateway,
    scope: Scope,
    headers: RequestHeaders,
    reply_headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    started: float,
) -> int:
    held = 0
    try:
        try:
            principal, body = await admit(gateway, headers, receive)
            held = gateway.body_budget.hold(body)
        except Unavailable:
            if gateway.stopping.is_set():
                reply_headers.append((b"connection", b"close"))
            raise
    except Cancelled:
        return CLIENT_GONE
    except AtpError as exc:
        return await send_error(send, dialect, exc, reply_headers)
    try:
        caller = Caller(principal, headers.request_id, headers, scope)
        return await _serve_admitted(dialect, gateway, caller, body, reply_headers, receive, send, started)
    finally:
        gateway.body_budget.give(held)


async def _serve_admitted(
    dialect: Dialect,
    gateway: Gateway,
    caller: Caller,
    body: bytes,
    reply_headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    started: float,
) -> int:
    request: adapters_pb2.GenerateRequest | None = None
    try:
        request, encoder = dialect.parse(body, caller)
        stamp(request, caller, dialect.name)
        adapters = gateway.adapters
        if adapters is None:
            raise Unavailable("The gateway is starting.")
        copied = copied_reply(gateway, request)
        if copied is not None:
            try:
                return await send_copy(
                    copied, request, encoder, dialect.stream_headers, reply_headers, send, started
                )
            finally:
                # Even when the client went away mid-write: the adapters observe their hits either way.
                report_hit(gateway, request, copied, started)
        if not request.stream:
            reply, upstream = await complete(adapters, request, receive)
            gateway.cache_copy.keep(request, reply)
    except Cancelled:
        return CLIENT_GONE
    except AtpError as exc:
        return await send_error(send, dialect, exc, reply_headers, request)
    if not request.stream:
        try:
            return await _send_whole(upstream, reply, encoder, reply_headers, send, started)
        finally:
            upstream.close()
    return await _serve_stream(
        dialect, gateway, adapters, request, encoder, reply_headers, receive, send, started
    )


async def _serve_stream(
    dialect: Dialect,
    gateway: Gateway,
    adapters: AdaptersClient,
    request: adapters_pb2.GenerateRequest,
    encoder: ReplyEncoder,
    reply_headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    started: float,
) -> int:
    upstream = UpstreamCall(adapters.generate(request), receive)
    try:
        try:
            upstream, first = await first_message(adapters, request, upstream, receive)
        except aio.AioRpcError as exc:
            error = error_from_rpc(exc, generating=True)
            return await send_error(send, dialect, error, reply_headers, request)
        if first is None or not first.HasField("header"):
            log.error("adapters reply without a header", extra={"request_id": request.request_id})
            return await send_error(send, dialect, Internal("internal error"), reply_headers)
        if first.HasField("error"):
            error = error_from_generate(first.error.code, first.error.message, first.error.type)
            return await send_error(send, dialect, error, reply_headers, request)
        # The adapters admit the request against the tenant's limits and report x-ratelimit-* values in
        # the first header (none when the tenant has no limits).
        add_limit_headers(reply_headers, await upstream.limit_values(first.header))
        add_route_headers(reply_headers, first.header)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*dialect.stream_headers, *reply_headers],
            }
        )
        if first.header.cache_expires_at_ms:
            upstream.kept = adapters_pb2.GenerateResponse()
            upstream.kept.CopyFrom(first)
        status = await _stream(upstream, first, encoder, send, started)
        if upstream.kept is not None:
            gateway.cache_copy.keep(request, upstream.kept)
        return status
    finally:
        upstream.close()


async def _send_whole(
    upstream: UpstreamCall,
    reply: adapters_pb2.GenerateResponse,
    encoder: ReplyEncoder,
    reply_headers: list[tuple[bytes, bytes]],
    send: Send,
    started: float,
) -> int:
    add_limit_headers(reply_headers, await upstream.limit_values(reply.header))
    add_route_headers(reply_headers, reply.header)
    body = encoder.whole(reply)
    # ATP's overhead: everything but the provider's time, measured before the body leaves, so the reply
    # can carry it.
    overhead = metrics.overhead_seconds(started, reply.completion.provider_ms)
    metrics.OVERHEAD_JSON.observe(overhead)
    reply_headers.append(metrics.overhead_header(overhead))
    await send_json(send, 200, body, reply_headers)
    return 200


async def _stream(
    upstream: UpstreamCall,
    first: adapters_pb2.GenerateResponse,
    encoder: ReplyEncoder,
    send: Send,
    started: float,
) -> int:
    # The opening events and the first deltas leave in one write.
    out = encoder.start(first.header) + encoder.deltas(first.deltas)
    message: adapters_pb2.GenerateResponse | None = first
    while True:
        if message is None:
            log.error("adapters stream ended without a completion")
            await _end_with_error(send, encoder, out, Internal("The reply ended unexpectedly."))
            return 200
        if message.HasField("completion"):
            upstream.completed = True
            await send({"type": "http.response.body", "body": out + encoder.finish(message.completion)})
            # Measured after the last write: a stream's overhead includes delivering every event.
            # (The headers left with the first event, before this was known: no x-atp-overhead-ms here.)
            metrics.OVERHEAD_SSE.observe(metrics.overhead_seconds(started, message.completion.provider_ms))
            await upstream.finish()
            return 200
        if message.HasField("error"):
            error = error_from_generate(message.error.code, message.error.message, message.error.type)
            await _end_with_error(send, encoder, out, error)
            return 200
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        try:
            message = await upstream.read()
        except aio.AioRpcError as exc:
            await _end_with_error(send, encoder, b"", error_from_rpc(exc, generating=True))
            return 200
        if message is not None:
            out = encoder.deltas(message.deltas)


async def _end_with_error(send: Send, encoder: ReplyEncoder, pending: bytes, error: AtpError) -> None:
    # A stream that broke after output ends with the dialect's error event and without its normal end,
    # so no client mistakes a truncated reply for a complete one.
    metrics.STREAM_ERRORS.labels(openai_error(error)[1]["code"] or "unknown").inc()
    await send({"type": "http.response.body", "body": pending + encoder.broken(error)})
