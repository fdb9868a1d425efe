"""WebSocket /v1/ws: several concurrent chat requests on one socket, each with a client-chosen id.

Protocol (every frame is one JSON object, sent as text):

Client to server
  {"type": "request", "id": "<id>", "body": {<chat completion request>}}
      Starts a request. `id` is chosen by the client (1-128 chars) and must not be in flight already.
      `body` is exactly the body of POST /v1/chat/completions; deltas are sent unless it says
      "stream": false. At most ws_max_concurrent requests may be in flight per socket.
  {"type": "cancel", "id": "<id>"}
      Cancels that request; the upstream call is cancelled at once. Unknown or finished ids are ignored.

Server to client
  {"type": "delta", "id": "<id>", "delta": {"content": "...", "tool_calls": [...], ...}}
      Reply pieces, in order; one frame carries everything of one choice that arrived together (the
      fields of a chat.completion.chunk delta). Choices other than the first (`n` > 1) carry "choice": i.
  {"type": "done", "id": "<id>", "decision_id": "...", "model": "...", "response": {<chat.completion>}}
      (plus "deployment", "region" and "cache" when they apply, as the x-atp-* reply headers over HTTP)
      The request finished; `response` is the same object the HTTP endpoint returns.
  {"type": "error", "id": "<id>" | null, "error": {"message", "type", "param", "code"}}
      The request failed (OpenAI error object; the HTTP status it would have had is in "status").
      `id` is null for a frame that could not be read.
  {"type": "cancelled", "id": "<id>"}
      Acknowledges a cancel; nothing more is sent for that id.

Authentication is the same as HTTP (Authorization: Bearer, api-key or x-api-key on the upgrade request);
x-atp-user and x-atp-tags on the upgrade request apply to every request on the socket.
A failed authentication is reported as an error frame, then the socket closes with 1008. When the gateway
drains, new requests get an error frame (503), requests in flight finish, then the socket closes with
1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import orjson
from grpc import aio
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketState

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError, Internal, InvalidArgument, PayloadTooLarge, RateLimited, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import RequestHeaders
from atp_gateway.auth import Principal, api_key_from_headers
from atp_gateway.cache_copy import CopiedReply
from atp_gateway.cache_serve import copied_reply, replayed, report_hit
from atp_gateway.dialects.chat import CHAT
from atp_gateway.dialects.chat_reply import completion_json, custom_shape, merge_deltas
from atp_gateway.dialects.chat_request import to_generate_request
from atp_gateway.dialects.chat_schema import CHAT_REQUEST
from atp_gateway.errors import error_from_generate, error_from_rpc, error_from_validation, openai_error
from atp_gateway.exchange import Caller, stamp
from atp_gateway.gateway import Gateway
from atp_gateway.schemas import WS_MESSAGE
from atp_gateway.upstream_call import complete

log = logging.getLogger("atp.gateway.websocket")

__all__ = ["handle_websocket"]

GOING_AWAY = 1001
# The close reason of a drain: a reconnect hint (clients reconnect; the balancer picks another replica).
DRAIN_REASON = "draining: reconnect, retry after 1s"


def _error_frame(request_id: str | None, exc: AtpError) -> dict[str, Any]:
    status, error = openai_error(exc)
    return {"type": "error", "id": request_id, "status": status, "error": error}


async def handle_websocket(gateway: Gateway, websocket: WebSocket) -> None:
    """Accept, authenticate and serve one socket until the client leaves or the gateway drains."""
    await websocket.accept()
    headers = websocket.scope["headers"]
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"api-key" or name == b"x-api-key":
            api_key = value
    try:
        if gateway.stopping.is_set():
            raise Unavailable("The gateway is shutting down; reconnect to another replica.", retry_after=1.0)
        key = api_key_from_headers(authorization, api_key)
        principal = gateway.keys.authenticate(key)
    except AtpError as exc:
        with contextlib.suppress(Exception):
            await websocket.send_text(orjson.dumps(_error_frame(None, exc)).decode())
            code = GOING_AWAY if isinstance(exc, Unavailable) else exc.mapping.ws_close_code
            await websocket.close(code, exc.message[:120])
        return
    session = _Session(gateway, websocket, principal, key or "")
    gateway.websockets.add(session)
    metrics.WEBSOCKETS.inc()
    try:
        await session.run()
    finally:
        metrics.WEBSOCKETS.dec()
        gateway.websockets.discard(session)
        session.closed.set()


class _Session:
    """One socket: a reader loop, one task per request in flight, and one lock that orders writes."""

    def __init__(self, gateway: Gateway, websocket: WebSocket, principal: Principal, api_key: str):
        self._gateway = gateway
        self._websocket = websocket
        self._principal = principal
        # Kept in memory only, to re-check each request: a key revoked while the socket is open stops
        # working within the directory's poll interval, as on HTTP.
        self._api_key = api_key
        # The upgrade request's headers (x-atp-user, x-atp-tags) apply to every request on the socket.
        self._headers = RequestHeaders(websocket.scope)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Tasks that only send a refusal; held here because the event loop keeps tasks weakly.
        self._untracked: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self.closed = asyncio.Event()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        stopping = asyncio.create_task(self._gateway.stopping.wait())
        try:
            await asyncio.wait((reader, stopping), return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                close_code = reader.result()
                if close_code is not None:
                    await self._close(close_code)
                return
            # Draining: the reader keeps handling cancels and refuses new requests; requests in flight
            # get their replies, then the socket closes with 1001.
            pending = [t for t in self._tasks.values() if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=self._gateway.settings.grace_s)
            await self._close(GOING_AWAY, DRAIN_REASON)
        finally:
            tasks = (reader, stopping, *self._tasks.values(), *self._untracked)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _close(self, code: int, reason: str | None = None) -> None:
        if self._websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                async with self._send_lock:
                    await self._websocket.close(code, reason)

    async def _send(self, frame: dict[str, Any]) -> None:
        # One writer at a time: frames of concurrent requests must not interleave on the wire.
        async with self._send_lock:
            await self._websocket.send_text(orjson.dumps(frame).decode())

    async def _read_loop(self) -> int | None:
        """Read frames until the client leaves (None) or a frame forces a close (its close code)."""
        limit = self._gateway.settings.ws_max_message_bytes
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > limit:
                await self._send(_error_frame(None, PayloadTooLarge(f"Frames are limited to {limit} bytes.")))
                continue
            try:
                frame = WS_MESSAGE.validate_json(data)
            except ValidationError as exc:
                await self._send(_error_frame(_id_of(data), error_from_validation(exc)))
                continue
            request_id = frame["id"]
            if frame["type"] == "cancel":
                await self._cancel(request_id)
            else:
                self._start(request_id, frame["body"])

    def _start(self, request_id: str, body: dict[str, Any]) -> None:
        error: AtpError | None = None
        if request_id in self._tasks:
            error = InvalidArgument(f"Request id {request_id!r} is already in flight.", param="id")
        elif self._gateway.stopping.is_set():
            error = Unavailable(
                "The gateway is shutting down; reconnect to another replica.", retry_after=1.0
            )
        elif len(self._tasks) >= self._gateway.settings.ws_max_concurrent:
            error = RateLimited(
                f"At most {self._gateway.settings.ws_max_concurrent} requests may be in flight per socket."
            )
        if error is not None:
            # Sent from a task so the reader never waits on a slow client's socket.
            self._spawn(request_id, self._send_error_only(request_id, error), track=False)
            return
        self._spawn(request_id, self._serve(request_id, body), track=True)

    def _forget(self, request_id: str, _task: asyncio.Task[Any]) -> None:
        self._tasks.pop(request_id, None)

    def _spawn(self, request_id: str, coro: Any, *, track: bool) -> None:
        task = asyncio.create_task(coro)
        if track:
            self._tasks[request_id] = task
            task.add_done_callback(functools.partial(self._forget, request_id))
        else:
            self._untracked.add(task)
            task.add_done_callback(self._untracked.discard)

    async def _send_error_only(self, request_id: str, error: AtpError) -> None:
        with contextlib.suppress(Exception):
            await self._send(_error_frame(request_id, error))

    async def _cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is None or task.done():
            return
        task.cancel()
        # Wait for it to unwind (the upstream call is cancelled on the way) so no frame of it follows
        # the acknowledgement.
        await asyncio.wait((task,))
        if task.cancelled():
            await self._send({"type": "cancelled", "id": request_id})

    async def _serve(self, request_id: str, body: dict[str, Any]) -> None:
        metrics.IN_FLIGHT_WS.inc()
        try:
            frame = await self._exchange(request_id, body)
        except asyncio.CancelledError:
            raise
        except AtpError as exc:
            frame = _error_frame(request_id, exc)
        except Exception:
            log.exception("websocket request failed")
            frame = _error_frame(request_id, Internal("internal error"))
        finally:
            metrics.IN_FLIGHT_WS.dec()
        with contextlib.suppress(Exception):
            await self._send(frame)

    async def _exchange(self, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run one request, sending its deltas; returns the final frame (done or error)."""
        try:
            parsed = CHAT_REQUEST.validate_python(body)
        except ValidationError as exc:
            raise error_from_validation(exc, body) from None
        stream = parsed.get("stream", True) is not False
        legacy = bool(parsed.get("functions"))
        self._principal = self._gateway.keys.authenticate(self._api_key)
        request = to_generate_request(parsed, stream=stream)
        caller = Caller(self._principal, request_id, self._headers, self._websocket.scope)
        stamp(request, caller, CHAT.name)
        adapters = self._gateway.adapters
        if adapters is None:
            raise Unavailable("The gateway is starting.")
        copied = copied_reply(self._gateway, request)
        if copied is not None:
            return await self._from_copy(request_id, request, copied, legacy)
        if not stream:
            # One Complete call, no delta frames, the done frame.
            reply, upstream = await complete(adapters, request, None)
            upstream.close()
            self._gateway.cache_copy.keep(request, reply)
            return _done(request_id, reply, legacy)
        call = adapters.generate(request)
        try:
            merged: adapters_pb2.GenerateResponse | None = None
            custom: set[tuple[int, int]] = set()
            while True:
                try:
                    message = await call.read()
                except aio.AioRpcError as exc:
                    if merged is not None or not adapters.lacks_method(exc, call):
                        raise error_from_rpc(exc, generating=True) from None
                    call = adapters.generate(request)
                    continue
                if message is aio.EOF:
                    log.error("adapters stream ended without a completion")
                    raise Internal("The reply ended unexpectedly.")
                if message.HasField("error"):
                    error = message.error
                    raise error_from_generate(error.code, error.message, error.type)
                if merged is None:
                    if not message.HasField("header"):
                        log.error("adapters reply without a header")
                        raise Internal("internal error")
                    merged = adapters_pb2.GenerateResponse()
                merged.MergeFrom(message)
                await self._send_deltas(request_id, message, legacy, custom)
                if message.HasField("completion"):
                    self._gateway.cache_copy.keep(request, merged)
                    return _done(request_id, merged, legacy)
        finally:
            call.cancel()

    async def _send_deltas(
        self,
        request_id: str,
        message: adapters_pb2.GenerateResponse,
        legacy: bool,
        custom: set[tuple[int, int]],
    ) -> None:
        """The delta frames of one Generate message."""
        for choice in merge_deltas(message.deltas, legacy):
            for tool_call in choice["delta"].get("tool_calls", ()):
                custom_shape(custom, choice["index"], tool_call)
            frame = {"type": "delta", "id": request_id, "delta": choice["delta"]}
            if choice["index"]:
                frame["choice"] = choice["index"]
            await self._send(frame)

    async def _from_copy(
        self, request_id: str, request: adapters_pb2.GenerateRequest, copied: CopiedReply, legacy: bool
    ) -> dict[str, Any]:
        """A hit answered from this worker's copy: the frames an adapters-served hit gets, then reported."""
        started = time.perf_counter()
        reply = replayed(copied, request)
        try:
            if request.stream:
                await self._send_deltas(request_id, reply, legacy, set())
        finally:
            # Even when the session broke mid-write: the adapters observe their hits either way.
            report_hit(self._gateway, request, copied, started)
        return _done(request_id, reply, legacy)


def _done(request_id: str, reply: adapters_pb2.GenerateResponse, legacy: bool) -> dict[str, Any]:
    """The final frame of a request served in full (where it was served, as the HTTP headers say)."""
    header = reply.header
    frame: dict[str, Any] = {
        "type": "done",
        "id": request_id,
        "decision_id": header.decision_id,
        "model": header.model,
        "response": completion_json(reply, legacy_functions=legacy),
    }
    if header.deployment:
        frame["deployment"] = header.deployment
    if header.region:
        frame["region"] = header.region
    if header.cache:
        frame["cache"] = header.cache
    return frame


def _id_of(data: str | bytes) -> str | None:
    # Best effort, so a client can tell which of its requests a malformed frame was.
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    request_id = value.get("id") if isinstance(value, dict) else None
    return request_id if isinstance(request_id, str) and len(request_id) <= 128 else None
