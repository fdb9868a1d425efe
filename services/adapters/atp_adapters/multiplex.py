"""The Multiplex stream: the gateway's Generate and Complete calls over one long-lived call, batched per write."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp_adapters.pipeline import GeneratePipeline
from atp_common.errors import AtpError, InvalidArgument, error_metadata
from atp_common.interceptors import MethodSeries
from atp_common.replies import merged_reply
from atp_common.server import MAX_MESSAGE_BYTES

log = logging.getLogger("atp.adapters.multiplex")

__all__ = ["DEFAULT_WINDOW_BYTES", "MultiplexHub", "RateLimits", "check_unstreamed"]

# What a call may have sent beyond its caller's credits: far above a typical reply, so credits are rare.
DEFAULT_WINDOW_BYTES = 64 * 1024
# A batch closes once it holds this much, so a message stays far below gRPC's limit whatever the load.
FRAME_BYTES = 1024 * 1024
# A reply message that could not leave in a message of its own, with room for its item's framing.
MAX_ITEM_BYTES = MAX_MESSAGE_BYTES - 1024
_ITEM_OVERHEAD = 16
# Calls in flight on one stream: far above a gateway worker's own cap on requests in flight.
MAX_CALLS = 10_000
_SERVICE = "/atp.adapters.v1.AdaptersService/"


class _TooLarge(Exception):
    """A reply message above what one gRPC message may carry."""


class RateLimits:
    """A call's x-ratelimit-* values from its admission, until the first message with a header takes them."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: tuple[tuple[str, str], ...] | None = None

    async def keep(self, values: tuple[tuple[str, str], ...]) -> None:
        self.values = values

    def stamp(self, response: adapters_pb2.GenerateResponse) -> None:
        if response.HasField("header"):
            response.header.rate_limits.update(self.values or ())
            self.values = None


class MultiplexHub:
    """The Multiplex streams open on this replica, and the drain that closes them."""

    def __init__(self, pipeline: GeneratePipeline) -> None:
        self._pipeline = pipeline
        self._sessions: set[_Session] = set()
        self.draining = False
        # Each call is counted as the Generate or Complete call it stands for.
        self.series = {False: MethodSeries(_SERVICE + "Generate"), True: MethodSeries(_SERVICE + "Complete")}

    def drain(self) -> None:
        """Tell every stream's caller to send no new calls on it (each ends once its calls have)."""
        self.draining = True
        for session in self._sessions:
            session.close_soon()

    async def serve(
        self, requests: AsyncIterator[adapters_pb2.MultiplexRequest], context: aio.ServicerContext
    ) -> AsyncIterator[adapters_pb2.MultiplexResponse]:
        """One Multiplex stream: its calls run as tasks of their own; their messages leave in batches."""
        session = _Session(self, requests)
        self._sessions.add(session)
        if self.draining:
            session.close_soon()
        try:
            async for frame in session.frames():
                yield frame
        finally:
            self._sessions.discard(session)
            await session.stop()

    async def run(self, session: _Session, call: adapters_pb2.MultiplexCall) -> None:
        """One call: the pipeline's messages, then its end with the status its own call would end with."""
        cid, whole = call.id, call.whole
        started = time.perf_counter()
        timeout = call.timeout_ms / 1000 if call.timeout_ms else None
        limits = RateLimits()
        status, details = grpc.StatusCode.OK, ""
        trailers: tuple[tuple[str, str], ...] = ()
        try:
            async with asyncio.timeout(timeout):
                if whole:
                    check_unstreamed(call.request)
                responses = self._pipeline.generate(call.request, timeout, limits.keep)
                async with contextlib.aclosing(responses):
                    if whole:
                        reply = await merged_reply(responses)
                        limits.stamp(reply)
                        session.put(cid, reply, reply.ByteSize())
                    else:
                        async for response in responses:
                            if limits.values is not None:
                                limits.stamp(response)
                            await session.send(cid, response)
        except AtpError as exc:
            status, details, trailers = exc.mapping.grpc_code, exc.message, error_metadata(exc)
        except TimeoutError:
            status, details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
        except _TooLarge:
            # Its own call would fail the same way; here the stream, and every other call, must not.
            status, details = grpc.StatusCode.RESOURCE_EXHAUSTED, "reply message too large"
        except asyncio.CancelledError:
            # The caller cancelled it (nobody reads an end) or the stream is closing.
            self.series[whole].done("CANCELLED", started)
            return
        except Exception:
            # A bug: logged with its traceback here, never sent to the caller.
            log.exception("unhandled error in a multiplexed call")
            status, details = grpc.StatusCode.INTERNAL, "internal error"
        self.series[whole].done(status.name, started)
        session.end(cid, status, details, trailers)


def check_unstreamed(request: adapters_pb2.GenerateRequest) -> None:
    """Complete's semantics (one whole reply) are for non-streamed requests only."""
    if request.stream:
        raise InvalidArgument("Complete serves non-streamed requests; stream with Generate", param="stream")


class _Call:
    """A call in flight on a stream: its task and what it may still send before the caller's credits."""

    __slots__ = ("resume", "task", "unacked", "window")

    def __init__(self, task: asyncio.Task[None], window: int) -> None:
        self.task = task
        self.window = window
        self.unacked = 0
        self.resume: asyncio.Event | None = None


class _Session:
    """One Multiplex stream: reads the caller's calls, cancels and credits; batches the replies."""

    def __init__(self, hub: MultiplexHub, requests: AsyncIterator[adapters_pb2.MultiplexRequest]) -> None:
        self._hub = hub
        self._requests = requests
        self._calls: dict[int, _Call] = {}
        # Batches ready to leave: full ones, then the one being filled (`_frame`, `_frame_bytes` in it).
        self._full: collections.deque[adapters_pb2.MultiplexResponse] = collections.deque()
        self._frame = adapters_pb2.MultiplexResponse()
        self._frame_bytes = 0
        self._closing = False
        self._wake = asyncio.Event()
        self._half_closed = False
        self._reader: asyncio.Task[None] | None = None

    def close_soon(self) -> None:
        self._closing = True
        self._wake.set()

    def put(self, cid: int, response: adapters_pb2.GenerateResponse, size: int) -> None:
        if size > MAX_ITEM_BYTES:
            raise _TooLarge
        if self._frame_bytes + size > FRAME_BYTES and self._frame_bytes:
            self._full.append(self._frame)
            self._frame = adapters_pb2.MultiplexResponse()
            self._frame_bytes = 0
        self._frame.items.add(id=cid, message=response)
        self._frame_bytes += size + _ITEM_OVERHEAD
        self._wake.set()

    async def send(self, cid: int, response: adapters_pb2.GenerateResponse) -> None:
        """Put a stream's message, then wait while the call is past its window (a slow reader)."""
        size = response.ByteSize()
        self.put(cid, response, size)
        call = self._calls.get(cid)
        if call is None:
            return
        call.unacked += size
        while call.unacked > call.window:
            call.resume = asyncio.Event()
            await call.resume.wait()

    def end(
        self, cid: int, status: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...]
    ) -> None:
        if self._calls.pop(cid, None) is not None:
            self._put_end(cid, status, details, trailers)

    def _put_end(
        self, cid: int, status: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...]
    ) -> None:
        item = self._frame.items.add(id=cid)
        item.end.code = status.value[0]
        item.end.details = details
        item.end.trailers.update(trailers)
        self._frame_bytes += _ITEM_OVERHEAD
        self._wake.set()

    async def frames(self) -> AsyncIterator[adapters_pb2.MultiplexResponse]:
        """Each batch of items as one message, until the caller half-closed and its calls have ended."""
        self._reader = asyncio.create_task(self._read(), name="multiplex-reader")
        told_closing = False
        while True:
            if self._full:
                frame = self._full.popleft()
            elif self._frame_bytes or self._closing != told_closing:
                frame, self._frame, self._frame_bytes = self._frame, adapters_pb2.MultiplexResponse(), 0
            elif self._half_closed and not self._calls:
                return
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame.closing = told_closing = self._closing
            yield frame

    async def _read(self) -> None:
        hub = self._hub
        try:
            async for up in self._requests:
                # Cancels free their calls' places before new calls take them; a cancel of a call in
                # the same batch applies once that call has started.
                later = [cid for cid in up.cancels if not self._cancel(cid)]
                for call in up.calls:
                    self._start(hub, call)
                for cid in later:
                    self._cancel(cid)
                for credit in up.credits:
                    self._credit(credit.id, credit.bytes)
        except (aio.AioRpcError, asyncio.InvalidStateError) as exc:
            log.info("multiplex stream ended by its caller: %s", exc)
        finally:
            self._half_closed = True
            self._wake.set()

    def _start(self, hub: MultiplexHub, call: adapters_pb2.MultiplexCall) -> None:
        if len(self._calls) >= MAX_CALLS:
            # Bounded like every buffer: a caller past it is told to retry, as an overloaded replica would.
            self._put_end(call.id, grpc.StatusCode.UNAVAILABLE, "too many calls on this stream", ())
            return
        if call.id in self._calls:
            # The call running under that id goes on; only the newcomer is refused.
            self._put_end(call.id, grpc.StatusCode.ALREADY_EXISTS, "call id in use", ())
            return
        task = asyncio.create_task(hub.run(self, call))
        self._calls[call.id] = _Call(task, call.window_bytes or DEFAULT_WINDOW_BYTES)

    def _cancel(self, cid: int) -> bool:
        running = self._calls.pop(cid, None)
        if running is None:
            return False
        running.task.cancel()
        return True

    def _credit(self, cid: int, size: int) -> None:
        call = self._calls.get(cid)
        if call is None:
            return
        call.unacked -= size
        if call.resume is not None and call.unacked <= call.window:
            call.resume.set()
            call.resume = None

    async def stop(self) -> None:
        """The stream is over: cancel what still runs and wait for it (its observations are recorded)."""
        if self._reader is not None:
            self._reader.cancel()
        tasks = [call.task for call in self._calls.values()]
        self._calls.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *(t for t in (self._reader,) if t is not None), return_exceptions=True)
