"""The gateway's end of the adapters' Multiplex stream: many Generate and Complete calls over one call."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp_common.server import MAX_MESSAGE_BYTES

log = logging.getLogger("atp.gateway.multiplex")

__all__ = ["MuxCall", "MuxSession"]

METHOD = "/atp.adapters.v1.AdaptersService/Multiplex"
# Bytes a call may have delivered but not yet consumed before the adapters wait for credit: bounds what a
# slow client makes this process hold per request. A credit is sent each half window consumed.
WINDOW_BYTES = 64 * 1024
# A batch of calls closes once it holds this much, so a message stays far below gRPC's limit.
FRAME_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES - 1024
_CODES = {status.value[0]: status for status in grpc.StatusCode}


def _error(
    code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...] = ()
) -> aio.AioRpcError:
    """The error its own call would raise, so the exchange maps both kinds of call alike."""
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(*trailers), details)


class MuxCall:
    """One call on a Multiplex stream, read like a gRPC call: `read()` (or async iteration) gives each
    message, then `aio.EOF` (or raises the call's AioRpcError); `cancel()` tells the adapters and wakes a
    waiting reader with CancelledError."""

    __slots__ = (
        "_consumed",
        "_ended",
        "_error",
        "_messages",
        "_session",
        "_timer",
        "_waiter",
        "_window",
        "id",
        "whole",
    )

    def __init__(self, session: MuxSession, cid: int, whole: bool, window: int) -> None:
        self._window = window
        self._session = session
        self.id = cid
        self.whole = whole
        self._messages: collections.deque[adapters_pb2.GenerateResponse] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._consumed = 0
        self._timer: asyncio.TimerHandle | None = None

    def set_deadline(self, timeout_s: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self.expire)

    async def read(self) -> Any:
        """The next message, or aio.EOF after a call that ended OK."""
        while not self._messages:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return aio.EOF
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        if not self.whole:
            self._consumed += message.ByteSize()
            if self._consumed >= self._window // 2 and not self._ended:
                self._session.credit(self.id, self._consumed)
                self._consumed = 0
        return message

    def __aiter__(self) -> MuxCall:
        return self

    async def __anext__(self) -> adapters_pb2.GenerateResponse:
        """As a gRPC call iterates: each message, then StopAsyncIteration (whole_reply merges them)."""
        message = await self.read()
        if message is aio.EOF:
            raise StopAsyncIteration
        return message  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        """Cancel the call unless it has ended; a reader waiting on it gets CancelledError."""
        if self._ended:
            return False
        self._session.cancel(self)
        self._finish(asyncio.CancelledError())
        return True

    def deliver(self, message: adapters_pb2.GenerateResponse) -> None:
        self._messages.append(message)
        self._wake()

    def ended(self, end: adapters_pb2.MultiplexEnd) -> None:
        if end.code == 0:
            self._finish(None)
        else:
            trailers = tuple(end.trailers.items())
            self._finish(_error(_CODES.get(end.code, grpc.StatusCode.UNKNOWN), end.details, trailers))

    def fail(self, error: BaseException) -> None:
        if not self._ended:
            self._finish(error)

    def expire(self) -> None:
        """The call's deadline passed without its end: it fails as a gRPC deadline would."""
        self._timer = None
        if not self._ended:
            self._session.cancel(self)
            self._finish(_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def _finish(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if isinstance(error, asyncio.CancelledError):
            # A cancelled call keeps no messages: the reader stops at once, as a cancelled gRPC call does.
            self._messages.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if isinstance(self._error, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_result(None)


class MuxSession:
    """One Multiplex call to the adapters and the calls in flight on it. New calls go on it until the
    adapters say they are closing or the stream breaks (`usable`); the owner then opens another one."""

    def __init__(
        self, channel: aio.Channel, on_done: Callable[[MuxSession], None], *, window_bytes: int = WINDOW_BYTES
    ) -> None:
        method = channel.stream_stream(
            METHOD,
            request_serializer=adapters_pb2.MultiplexRequest.SerializeToString,
            response_deserializer=adapters_pb2.MultiplexResponse.FromString,
        )
        self._call = method()
        self._calls: dict[int, MuxCall] = {}
        self._next_id = 0
        self._window = window_bytes
        # Batches to send: full ones, then the one being filled (`_up`, `_up_bytes` of calls in it).
        self._full: collections.deque[adapters_pb2.MultiplexRequest] = collections.deque()
        self._up = adapters_pb2.MultiplexRequest()
        self._up_bytes = 0
        self._up_pending = False
        self._wake = asyncio.Event()
        self._on_done = on_done
        self.closing = False
        self.broken: aio.AioRpcError | None = None
        self._writer = asyncio.create_task(self._write(), name="multiplex-writer")
        self._reader = asyncio.create_task(self._read(), name="multiplex-reader")

    @property
    def usable(self) -> bool:
        return not self.closing and self.broken is None

    @property
    def finished(self) -> bool:
        return self._reader.done()

    def start(
        self, request: adapters_pb2.GenerateRequest, *, whole: bool, timeout_s: float | None
    ) -> MuxCall:
        """Send a call; its messages arrive on the returned MuxCall."""
        self._next_id += 1
        call = MuxCall(self, self._next_id, whole, self._window)
        size = request.ByteSize()
        if size > MAX_REQUEST_BYTES:
            # Its own call would fail the same way; the stream, and every other call on it, must not.
            call.fail(_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "request message too large"))
            return call
        if self._up_bytes + size > FRAME_BYTES and self._up_bytes:
            self._full.append(self._up)
            self._up = adapters_pb2.MultiplexRequest()
            self._up_bytes = 0
        self._calls[call.id] = call
        timeout_ms = max(int(timeout_s * 1000), 1) if timeout_s else 0
        self._up.calls.add(
            id=call.id, request=request, timeout_ms=timeout_ms, whole=whole, window_bytes=self._window
        )
        self._up_bytes += size + 32
        if timeout_s:
            call.set_deadline(timeout_s)
        self._flush()
        return call

    def cancel(self, call: MuxCall) -> None:
        if self._calls.pop(call.id, None) is not None and self.broken is None:
            self._up.cancels.append(call.id)
            self._flush()
        self._maybe_half_close()

    def credit(self, cid: int, size: int) -> None:
        if self.broken is None:
            self._up.credits.add(id=cid, bytes=size)
            self._flush()

    def _flush(self) -> None:
        self._up_pending = True
        self._wake.set()

    def _maybe_half_close(self) -> None:
        if self.closing and not self._calls:
            # No call left to cancel or credit: the writer half-closes and the adapters end the stream.
            self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.broken is None and (self._full or self._up_pending):
                    if self._full:
                        frame = self._full.popleft()
                    else:
                        frame, self._up, self._up_bytes = self._up, adapters_pb2.MultiplexRequest(), 0
                        self._up_pending = False
                    await self._call.write(frame)
                if self.broken is not None:
                    return
                if self.closing and not self._calls:
                    await self._call.done_writing()
                    return
        except (aio.AioRpcError, asyncio.InvalidStateError, aio.UsageError):
            # The stream is over; the reader reports why to every call.
            return

    async def _read(self) -> None:
        error = _error(grpc.StatusCode.UNAVAILABLE, "the adapters ended the multiplex stream")
        try:
            while (frame := await self._call.read()) is not aio.EOF:
                assert isinstance(frame, adapters_pb2.MultiplexResponse)
                self._take(frame)
        except aio.AioRpcError as exc:
            error = exc
        finally:
            self._close(error)

    def _take(self, frame: adapters_pb2.MultiplexResponse) -> None:
        calls = self._calls
        for item in frame.items:
            call = calls.get(item.id)
            if call is None:
                continue
            if item.HasField("end"):
                del calls[item.id]
                call.ended(item.end)
            else:
                call.deliver(item.message)
        if frame.closing and not self.closing:
            self.closing = True
            self._on_done(self)
        self._maybe_half_close()

    def _close(self, error: aio.AioRpcError) -> None:
        self.broken = error
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.fail(error)
        if not self.closing:
            self._on_done(self)
        self._wake.set()

    async def close(self) -> None:
        """Cancel the stream (its calls fail as the adapters going away would fail them)."""
        self._call.cancel()
        for task in (self._reader, self._writer):
            task.cancel()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)
