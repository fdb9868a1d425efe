"""What the fake providers share: the server lifecycle, request recording and the fault schedule."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Word-ish pieces, one per streamed text event, that concatenate back to the text.
_PIECE = re.compile(r"\s*\S+|\s+")
# How often a holding handler looks whether the client has gone; small so tests see disconnects fast.
_POLL_S = 0.005


@dataclass
class Faults:
    """What goes wrong on the next requests. Set `server.faults` in a test; the default is nothing."""

    status: int | None = None
    retry_after: str | None = None
    error_message: str = "injected failure"
    # OpenAI's `code` word for the error (`context_length_exceeded`); fakes of other APIs have no place for it.
    error_code: str | None = None
    # How many requests the status or hang applies to before the server behaves again; None means all.
    times: int | None = None
    hang_s: float = 0.0
    cut_after_chunks: int | None = None
    hang_after_chunks: int | None = None
    malformed_after_chunks: int | None = None
    chunk_delay_s: float = 0.0


@dataclass
class FakeReply:
    """The reply every request gets, in provider-neutral terms; each fake renders its own wire format."""

    text: str = "Hello from the fake provider, one word at a time."
    # (function name, arguments as JSON text)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 11
    completion_tokens: int = 9
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def pieces(self) -> list[str]:
        return _PIECE.findall(self.text)

    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakeServer:
    """A real HTTP server on 127.0.0.1:0 speaking one provider's wire format."""

    base_path = ""

    def __init__(self) -> None:
        self.faults = Faults()
        self.reply = FakeReply()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self._disconnected = asyncio.Event()
        self._faulted = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    # Provided by each wire format.

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    # Lifecycle.

    async def start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_disconnects(self, count: int = 1, within_s: float = 5.0) -> None:
        """Return once `count` clients have left mid-reply; TimeoutError after `within_s`."""
        async with asyncio.timeout(within_s):
            while self.disconnects < count:
                self._disconnected.clear()
                await self._disconnected.wait()

    def _note_disconnect(self) -> None:
        self.disconnects += 1
        self._disconnected.set()

    # Shared request handling.

    async def record(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        return body

    async def before_reply(self, request: web.Request) -> web.Response | None:
        """Apply the fault schedule: hang, then an error status. None means reply normally."""
        faults = self.faults
        if faults.times is not None and self._faulted >= faults.times:
            return None
        if not faults.hang_s and faults.status is None:
            return None
        self._faulted += 1
        if faults.hang_s and await self.hold(request, faults.hang_s):
            return web.Response(status=499)
        if faults.status is not None:
            headers = {"retry-after": faults.retry_after} if faults.retry_after is not None else None
            body = self.error_body(faults.status, faults.error_message)
            if faults.error_code is not None:
                body["error"]["code"] = faults.error_code
            return web.json_response(body, status=faults.status, headers=headers)
        return None

    async def hold(self, request: web.Request, seconds: float) -> bool:
        """Wait up to `seconds`; True (and counted) if the client closed the connection meanwhile."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            transport = request.transport
            if transport is None or transport.is_closing():
                self._note_disconnect()
                return True
            await asyncio.sleep(_POLL_S)
        return False

    async def send_events(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        """Stream pre-rendered SSE events, applying the stream faults."""
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        faults = self.faults
        for index, event in enumerate(events):
            if faults.cut_after_chunks == index:
                assert request.transport is not None
                request.transport.abort()
                return response
            if faults.hang_after_chunks == index:
                await self.hold(request, 60.0)
                return response
            if faults.malformed_after_chunks == index:
                await response.write(b"data: {this is not json\n\n")
            if index and faults.chunk_delay_s and await self.hold(request, faults.chunk_delay_s):
                return response
            try:
                await response.write(event)
            except ConnectionError:
                self._note_disconnect()
                return response
        await response.write_eof()
        return response


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE event."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
