"""POST /v1/chat/completions: validate, call Generate once, reply as JSON or as an SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson
from grpc import aio
from pydantic import ValidationError

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError, Cancelled, Internal, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, read_body, send_error, send_json
from atp_gateway.auth import api_key_from_headers
from atp_gateway.errors import (
    check_complete_reply,
    error_from_generate,
    error_from_rpc,
    error_from_validation,
    openai_error,
)
from atp_gateway.gateway import Gateway
from atp_gateway.schemas import CHAT_REQUEST
from atp_gateway.translate import CompletionBuilder, SseEncoder, atp_error_event, to_generate_request
from atp_gateway.upstream import AdaptersClient, whole_reply

log = logging.getLogger("atp.gateway.chat")

__all__ = ["handle_chat"]

ENDPOINT = "chat_completions"
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies such as nginx buffer responses unless told not to; a buffered stream is no stream.
    (b"x-accel-buffering", b"no"),
)
_CLIENT_GONE = 499


class _ClientGone(Exception):
    """The client disconnected; the upstream call has been cancelled."""


class _Exchange:
    """One chat request in flight: its upstream call (Generate for a stream, Complete otherwise) and the
    task that notices the client leaving."""

    __slots__ = ("call", "completed", "disconnected", "watcher")

    def __init__(self, call: aio.UnaryStreamCall | aio.UnaryUnaryCall, receive: Receive):
        self.call = call
        self.disconnected = False
        # Set once the completion has arrived: from then on a disconnect has nothing left to cancel (and
        # uvicorn reports one as soon as the reply is complete).
        self.completed = False
        self.watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        # The body has been read, so the next ASGI message is the disconnect. Cancelling the call here
        # stops the provider request at once instead of at the next chunk we fail to write.
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        if not self.completed:
            self.call.cancel()

    def _gone(self) -> bool:
        """Whether a CancelledError in this task came from the watcher cancelling the call (the client
        left), not from this task being cancelled."""
        task = asyncio.current_task()
        return self.disconnected and task is not None and not task.cancelling()

    async def read(self) -> adapters_pb2.GenerateResponse | None:
        """The next message of a Generate call; None at its end; _ClientGone when the client left."""
        assert isinstance(self.call, aio.UnaryStreamCall)
        try:
            message = await self.call.read()
        except asyncio.CancelledError:
            if self._gone():
                raise _ClientGone from None
            raise
        return None if message is aio.EOF else message

    async def reply(self) -> adapters_pb2.GenerateResponse:
        """The whole reply of a non-streamed request (whole_reply); _ClientGone when the client left."""
        try:
            return await whole_reply(self.call)
        except asyncio.CancelledError:
            if self._gone():
                raise _ClientGone from None
            raise

    async def limit_metadata(self) -> aio.Metadata | None:
        """Where the adapters put the x-ratelimit-* values: a stream's initial metadata, a unary call's
        trailing metadata (sent with the reply, where initial metadata would cost an exchange of its own)."""
        if isinstance(self.call, aio.UnaryStreamCall):
            return await self.call.initial_metadata()
        return await self.call.trailing_metadata()

    async def finish(self) -> None:
        """After a stream's completion: read the stream's end, so the call ends OK rather than cancelled
        (the adapters then record it as served and skip their cancellation path); one read, the server
        ends the stream right after the completion."""
        with contextlib.suppress(aio.AioRpcError, _ClientGone):
            await self.read()

    def close(self) -> None:
        self.watcher.cancel()
        self.call.cancel()


async def handle_chat(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole exchange; never raises (every failure becomes an OpenAI error reply or event)."""
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    status = 500
    metrics.IN_FLIGHT_HTTP.inc()
    try:
        status = await _serve(gateway, headers, reply_headers, receive, send, started)
    except _ClientGone:
        status = _CLIENT_GONE
        metrics.DISCONNECTS.inc()
    except OSError:
        # Writing to a client that went away (uvicorn raises ClientDisconnected, an OSError).
        status = _CLIENT_GONE
        metrics.DISCONNECTS.inc()
    except Exception:
        # A bug: logged with its traceback here, never shown to the client.
        log.exception("chat request failed", extra={"request_id": headers.request_id})
        status = 500
        with contextlib.suppress(Exception):
            # Fails harmlessly when the reply had already started.
            await send_error(send, Internal("internal error"), reply_headers)
    finally:
        metrics.IN_FLIGHT_HTTP.dec()
        metrics.observe(ENDPOINT, status, time.perf_counter() - started)


async def _serve(
    gateway: Gateway,
    headers: RequestHeaders,
    reply_headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    started: float,
) -> int:
    try:
        if gateway.stopping.is_set():
            reply_headers.append((b"connection", b"close"))
            raise Unavailable("The gateway is shutting down; retry on another replica.", retry_after=1.0)
        principal = gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
        body = await read_body(receive, headers.content_length, gateway.settings.max_body_bytes)
        try:
            parsed = CHAT_REQUEST.validate_json(body)
        except ValidationError as exc:
            raise error_from_validation(exc) from None
        stream = bool(parsed.get("stream"))
        request = to_generate_request(
            parsed,
            tenant=principal.tenant,
            key_id=principal.key_id,
            request_id=headers.request_id,
            stream=stream,
        )
        adapters = gateway.adapters
        if adapters is None:
            raise Unavailable("The gateway is starting.")
    except Cancelled:
        return _CLIENT_GONE
    except AtpError as exc:
        return (await send_error(send, exc, reply_headers)).status

    if not stream:
        return await _complete(adapters, request, receive, reply_headers, send, started)
    exchange = _Exchange(adapters.generate(request), receive)
    try:
        try:
            first = await exchange.read()
        except aio.AioRpcError as exc:
            return (await send_error(send, error_from_rpc(exc, generating=True), reply_headers)).status
        if first is None or not first.HasField("header"):
            log.error("adapters reply without a header", extra={"request_id": headers.request_id})
            return (await send_error(send, Internal("internal error"), reply_headers)).status
        if first.HasField("error"):
            error = error_from_generate(first.error.code, first.error.message, first.error.type)
            return (await send_error(send, error, reply_headers)).status
        # The adapters admit the request against the tenant's limits and report x-ratelimit-* values in
        # the initial metadata (absent when the tenant has no limits).
        _add_limit_headers(reply_headers, await exchange.limit_metadata())
        _add_route_headers(reply_headers, first.header)
        return await _stream(exchange, first, request.include_usage, reply_headers, send, started)
    finally:
        exchange.close()


def _add_limit_headers(reply_headers: list[tuple[bytes, bytes]], metadata: aio.Metadata | None) -> None:
    for key, value in metadata or ():
        if key.startswith("x-ratelimit-"):
            reply_headers.append((key.encode(), value.encode() if isinstance(value, str) else value))


def _add_route_headers(reply_headers: list[tuple[bytes, bytes]], header: adapters_pb2.GenerateHeader) -> None:
    reply_headers.append((b"x-atp-decision-id", header.decision_id.encode()))
    reply_headers.append((b"x-atp-model", header.model.encode()))


async def _complete(
    adapters: AdaptersClient,
    request: adapters_pb2.GenerateRequest,
    receive: Receive,
    reply_headers: list[tuple[bytes, bytes]],
    send: Send,
    started: float,
) -> int:
    """A non-streamed request: one Complete call, one JSON reply."""
    exchange = _Exchange(adapters.complete(request), receive)
    try:
        try:
            try:
                reply = await exchange.reply()
            except aio.AioRpcError as exc:
                if not adapters.lacks_complete(exc, exchange.call):
                    raise
                exchange.close()
                exchange = _Exchange(adapters.generate(request), receive)
                reply = await exchange.reply()
        except aio.AioRpcError as exc:
            return (await send_error(send, error_from_rpc(exc, generating=True), reply_headers)).status
        exchange.completed = True
        try:
            check_complete_reply(reply)
        except AtpError as exc:
            return (await send_error(send, exc, reply_headers)).status
        _add_limit_headers(reply_headers, await exchange.limit_metadata())
        _add_route_headers(reply_headers, reply.header)
        builder = CompletionBuilder(reply.header)
        builder.add(reply)
        # ATP's overhead: everything but the provider's time, measured before the body leaves, so the
        # reply can carry it.
        overhead = metrics.overhead_seconds(started, reply.completion.provider_ms)
        metrics.OVERHEAD_JSON.observe(overhead)
        reply_headers.append(metrics.overhead_header(overhead))
        await send_json(send, 200, orjson.dumps(builder.result()), reply_headers)
        return 200
    finally:
        exchange.close()


async def _stream(
    exchange: _Exchange,
    first: adapters_pb2.GenerateResponse,
    include_usage: bool,
    reply_headers: list[tuple[bytes, bytes]],
    send: Send,
    started: float,
) -> int:
    encoder = SseEncoder(first.header, include_usage)
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *reply_headers]})
    # The role event and the first deltas leave in one write.
    out = encoder.start() + encoder.deltas(first.deltas)
    message: adapters_pb2.GenerateResponse | None = first
    while True:
        if message is None:
            log.error("adapters stream ended without a completion")
            await _end_with_error(send, out, Internal("The reply ended unexpectedly."))
            return 200
        if message.HasField("completion"):
            exchange.completed = True
            await send({"type": "http.response.body", "body": out + encoder.finish(message.completion)})
            # Measured after the last write: a stream's overhead includes delivering every event.
            # (The headers left with the first event, before this was known: no x-atp-overhead-ms here.)
            metrics.OVERHEAD_SSE.observe(metrics.overhead_seconds(started, message.completion.provider_ms))
            await exchange.finish()
            return 200
        if message.HasField("error"):
            error = error_from_generate(message.error.code, message.error.message, message.error.type)
            await _end_with_error(send, out, error)
            return 200
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        try:
            message = await exchange.read()
        except aio.AioRpcError as exc:
            await _end_with_error(send, b"", error_from_rpc(exc, generating=True))
            return 200
        if message is not None:
            out = encoder.deltas(message.deltas)


async def _end_with_error(send: Send, pending: bytes, error: AtpError) -> None:
    # A stream that broke after output ends with an error event and without [DONE], so no client
    # mistakes a truncated reply for a complete one.
    metrics.STREAM_ERRORS.labels(openai_error(error)[1]["code"] or "unknown").inc()
    await send({"type": "http.response.body", "body": pending + atp_error_event(error)})
