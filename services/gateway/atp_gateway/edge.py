"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with bounds on what one client can hold."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from atp_gateway import metrics

log = logging.getLogger("atp.gateway")

# Up to this size a body is joined to its held head (one copy, one send); past it they leave in two.
_JOIN_BYTES = 64 * 1024

__all__ = ["EdgeLimits", "EdgeState", "edge_protocol"]


@dataclass(frozen=True)
class EdgeLimits:
    """What one process lets its clients hold (GatewaySettings' edge fields)."""

    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 4096
    max_requests: int = 1024
    max_unauthenticated_per_ip: int = 256


@dataclass
class EdgeState:
    """Per process: unauthenticated connections by client address, and whether the gateway drains."""

    unauthenticated: dict[str, int] = field(default_factory=dict)
    draining: bool = False
    stopping: bool = False
    connections: set[Any] = field(default_factory=set)

    def begin_drain(self) -> None:
        """From now on every reply says `Connection: close`, including replies whose head is not out yet."""
        self.draining = True
        for protocol in list(self.connections):
            protocol.close_after_reply()

    def stop(self) -> None:
        """From now on every request but the probes gets 503 with Retry-After and `Connection: close`."""
        self.stopping = True


class HeadHoldingTransport:
    """A connection's transport that holds a reply's head until its body's first write (or the loop's
    next turn), so a short reply leaves in one send instead of two: uvicorn writes the head on its own."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_BYTES:
                self._transport.write(held + data)
                return
            self._transport.write(held)
        elif data.startswith(b"HTTP/1.1 "):
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # The rest (extra info, flow control, set_protocol on an upgrade) is the transport's own.
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request the edge refuses."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


_PHRASES = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}
_LINGER_S = 2.0
_CREDENTIALS = (b"authorization", b"x-api-key", b"api-key")
# Probes answer through a drain: readiness says "draining", liveness stays up.
_PROBES = frozenset((b"/livez", b"/readyz", b"/startupz", b"/healthz"))


def _raw_reply(status: int, message: str) -> bytes:
    error_type = b"server_error" if status == 503 else b"invalid_request_error"
    body = b'{"error":{"message":"%s","type":"%s","param":null,"code":null}}' % (message.encode(), error_type)
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        _PHRASES[status],
        len(body),
    )
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return head + retry + b"connection: close\r\n\r\n" + body


_MESSAGES = {
    "head_too_large": "Request line and headers exceed the size limit.",
    "too_many_headers": "Too many request headers.",
    "head_timeout": "The request headers did not arrive in time.",
    "body_timeout": "The request body did not arrive in time.",
    "connections": "Too many open connections; retry shortly.",
    "unauthenticated_per_ip": "Too many unauthenticated connections from this address; retry shortly.",
    "stopping": "The gateway is shutting down; retry on another replica.",
}


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's protocol, plus: a size and count cap on each request head and a deadline for it, caps on
    connections (per process, and unauthenticated ones per client address) and on requests in flight, and
    `Connection: close` on every reply once the gateway drains. Bound by `edge_protocol`."""

    limits: EdgeLimits
    state: EdgeState

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = True
        self._head_bytes = 0
        self._header_count = 0
        self._heads_done = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._ip: str | None = None
        self._upgraded = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
        state, limits = self.state, self.limits
        state.connections.add(self)
        self._head_timer = self.loop.call_later(limits.head_timeout_s, self._head_timed_out)
        # uvicorn's set counts WebSockets too.
        if len(self.connections) > limits.max_connections:
            self._refuse(503, "connections")
            return
        self._ip = self.client[0] if self.client else ""
        count = state.unauthenticated.get(self._ip, 0) + 1
        state.unauthenticated[self._ip] = count
        if count > limits.max_unauthenticated_per_ip:
            self._refuse(503, "unauthenticated_per_ip")

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._trust()
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def _trust(self) -> None:
        ip = self._ip
        if ip is None:
            return
        self._ip = None
        left = self.state.unauthenticated.get(ip, 1) - 1
        if left > 0:
            self.state.unauthenticated[ip] = left
        else:
            self.state.unauthenticated.pop(ip, None)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._head_open or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self._refuse(408, "body_timeout")
            return
        # The app answered without waiting for the body (an auth error, say): the reply stands, and the
        # connection, whose next request could only start after the missing body, ends with it.
        cycle.keep_alive = False
        if cycle.response_complete:
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_open and not self.transport.is_closing():
            self._refuse(408, "head_timeout")

    def _refuse(self, status: int, reason: str) -> None:
        metrics.EDGE_REFUSED.labels(reason).inc()
        self._cancel_head_timer()
        transport = self.transport
        if transport.is_closing() or self._refused:
            return
        self._refused = True
        transport.write(_raw_reply(status, _MESSAGES[reason]))
        # A lingering close: closing while the client still sends would make the kernel answer with a
        # reset, which discards the reply before the client reads it. So stop writing, discard what still
        # arrives, and close when the client does or after a short linger.
        if not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:
            # The peer is already gone (reset between the write and the shutdown): nothing to linger for.
            transport.close()
            return
        self.loop.call_later(_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._head_open:
            self._feed(data)
            return
        if self._head_timer is None:
            # A request starts with its first byte: from then on its head has a deadline (the idle time
            # before that byte is the keep-alive timeout's business).
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)
        room = self.limits.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Rare: the head may end inside this chunk (a body follows). Feed what the limit allows; if the head
        # is not complete by then, it is too large.
        heads_done = self._heads_done
        self._feed(data[:room])
        if self._heads_done == heads_done:
            self._refuse(431, "head_too_large")
        elif not self._upgraded and not self.transport.is_closing():
            self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            if not self._head_open and self._body_timer is None:
                # The head is in and its body is not: without a deadline a client that holds the body
                # back would hold one of the process's request slots for as long as it likes.
                self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.reason)
                return
            log.warning("invalid HTTP request received")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            log.warning("invalid HTTP request received")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self.state.connections.discard(self)
        self._trust()
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, "too_many_headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._heads_done += 1
        self._cancel_head_timer()
        if self._ip is not None and any(name in _CREDENTIALS for name, _ in self.headers):
            # Whether the credentials are valid is the app's call; a connection that presents them is
            # bounded by the connection cap instead of its address's share.
            self._trust()
        refusal = None
        if len(self.tasks) >= self.limits.max_requests:
            metrics.EDGE_REFUSED.labels("requests").inc()
            refusal = _busy
        elif self.state.stopping and self.url.split(b"?", 1)[0] not in _PROBES:
            refusal = _stopping
        if refusal is None:
            super().on_headers_complete()
        else:
            app = self.app
            self.app = refusal
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        if self.state.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()
        self._head_open = True
        self._head_bytes = 0

    def shutdown(self) -> None:
        """The end of a drain (uvicorn's shutdown): a connection between requests, or with one arriving,
        gets a 503 and a lingering close. Closed outright, a request sent at that moment would meet a reset."""
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(503, "stopping")
            return
        super().shutdown()

    def close_after_reply(self) -> None:
        """Say `Connection: close` on the reply under way (if its head is not sent yet) and close after it."""
        # A reply whose head is already out keeps its connection: closing it after a reply that promised
        # keep-alive would race the client's next request; that request's reply says close instead.
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = False


_BUSY = (
    b'{"error":{"message":"Too many requests in flight; retry shortly.",'
    b'"type":"server_error","param":null,"code":null}}'
)


_STOPPING = (
    b'{"error":{"message":"The gateway is shutting down; retry on another replica.",'
    b'"type":"server_error","param":null,"code":null}}'
)


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    await _unavailable(send, _BUSY)


async def _stopping(scope: Any, receive: Any, send: Any) -> None:
    await _unavailable(send, _STOPPING)


async def _unavailable(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def edge_protocol(limits: EdgeLimits, state: EdgeState) -> type[EdgeProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to this process's limits and state."""
    return type("BoundEdgeProtocol", (EdgeProtocol,), {"limits": limits, "state": state})
