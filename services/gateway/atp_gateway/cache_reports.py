"""The cache hits a worker answered from its copy, reported to the adapters in batches (ReportCacheHits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import grpc
from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp_common.tasks import cancel_and_wait
from atp_gateway import metrics

__all__ = ["HitReporter"]

log = logging.getLogger("atp.gateway.cache_reports")

_SENT, _RETRIED = metrics.CACHE_REPORTS.labels("sent"), metrics.CACHE_REPORTS.labels("retried")
_DROPPED = metrics.CACHE_REPORTS.labels("dropped")
# After a failed report: wait before the next, doubling up to the cap, so unreachable adapters are not
# called in a loop.
_RETRY_FIRST_S, _RETRY_MAX_S = 0.1, 2.0
# One call's hits stay well under the largest gRPC message either side takes (64 MiB,
# atp_common.server.MAX_MESSAGE_BYTES), whatever `batch` and the queue's bound allow: a report over it
# would be refused on every retry. A single hit larger than this is sent alone.
_MAX_CALL_BYTES = 4 * 1024 * 1024
# Refusals that the same report meets on every retry: its hits are dropped and counted, not resent forever
# ahead of every hit queued behind them.
_PERMANENT = frozenset((grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED))

Send = Callable[[adapters_pb2.ReportCacheHitsRequest], Awaitable[object]]


class HitReporter:
    """A bounded queue of hits and the one task that sends them: every `interval_s`, or as soon as `batch`
    are waiting, in one call whose deadline `send` sets.

    A failed call keeps its hits for the next (they carry their observation ids, so a report that arrived
    but whose answer was lost is stored once), unless the adapters refused the report itself (invalid or
    too large), which no retry changes: those hits are dropped and counted. A call carries at most 4 MiB. The queue is bounded in bytes: when it is full (the
    adapters unreachable for long), `has_room` is False and the caller leaves hits to the adapters rather
    than serve one it could not report. Closing sends what is queued within a deadline; what cannot be
    sent then is dropped and counted.
    """

    def __init__(self, send: Send, *, batch: int, interval_s: float, max_bytes: int) -> None:
        self._send = send
        self._batch = batch
        self._interval_s = interval_s
        self._max_bytes = max_bytes
        self._queue: deque[tuple[adapters_pb2.CacheHit, int]] = deque()
        self._bytes = 0
        # Bytes held for hits being answered (reserve, then add): a slow client holds its hit's room, so
        # many hits answered at once cannot take the queue past its bound.
        self._reserved = 0
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def has_room(self) -> bool:
        """Whether a hit may be served and queued now."""
        return self._bytes + self._reserved < self._max_bytes

    def reserve(self, size: int) -> bool:
        """Hold room for a hit of about `size` bytes until `add`; False when the queue has none (a hit larger
        than the whole bound gets room only in an empty queue)."""
        held = self._bytes + self._reserved
        if held and held + size > self._max_bytes:
            return False
        self._reserved += size
        return True

    def add(self, hit: adapters_pb2.CacheHit, reserved: int = 0) -> None:
        """Queue one served hit, releasing the room `reserve` held for it."""
        self._reserved = max(self._reserved - reserved, 0)
        size = hit.ByteSize()
        self._queue.append((hit, size))
        self._bytes += size
        metrics.CACHE_REPORT_QUEUE.inc()
        if len(self._queue) >= self._batch:
            self._full.set()

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cache-hit-reports")

    async def _run(self) -> None:
        retry_s = _RETRY_FIRST_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._interval_s)
            self._full.clear()
            while self._queue:
                if await self._flush_one():
                    retry_s = _RETRY_FIRST_S
                    continue
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, _RETRY_MAX_S)
                break

    def _take(self) -> tuple[list[tuple[adapters_pb2.CacheHit, int]], int]:
        """The oldest queued hits, up to `batch` and _MAX_CALL_BYTES (at least one), and their bytes."""
        taken: list[tuple[adapters_pb2.CacheHit, int]] = []
        taken_bytes = 0
        queue = self._queue
        while queue and len(taken) < self._batch:
            if taken and taken_bytes + queue[0][1] > _MAX_CALL_BYTES:
                break
            taken.append(queue.popleft())
            taken_bytes += taken[-1][1]
        return taken, taken_bytes

    async def _flush_one(self) -> bool:
        """Send the oldest queued hits in one call; False (and the hits kept) when it failed and may
        succeed later. A report refused for what it is is dropped and counted."""
        taken, taken_bytes = self._take()
        try:
            await self._send(adapters_pb2.ReportCacheHitsRequest(hits=[hit for hit, _ in taken]))
        except asyncio.CancelledError:
            self._queue.extendleft(reversed(taken))
            raise
        except aio.AioRpcError as exc:
            if exc.code() not in _PERMANENT:
                return self._keep(taken, exc)
            _DROPPED.inc(len(taken))
            log.error("the adapters refused a report of %d cache hits: %s", len(taken), exc.details())
        except Exception as exc:
            return self._keep(taken, exc)
        else:
            _SENT.inc(len(taken))
        self._bytes -= taken_bytes
        metrics.CACHE_REPORT_QUEUE.dec(len(taken))
        return True

    def _keep(self, taken: list[tuple[adapters_pb2.CacheHit, int]], exc: Exception) -> bool:
        self._queue.extendleft(reversed(taken))
        _RETRIED.inc(len(taken))
        log.warning("reporting %d cache hits to the adapters failed: %s", len(taken), exc)
        return False

    async def close(self, timeout_s: float) -> None:
        """Stop the task, then send what is queued until `timeout_s` runs out, a failed call retried after
        a pause (the adapters may be restarting or reconnecting); drop and count the rest."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        deadline = time.monotonic() + timeout_s
        retry_s = _RETRY_FIRST_S
        while self._queue and time.monotonic() < deadline:
            try:
                sent = await asyncio.wait_for(self._flush_one(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                break
            if not sent:
                await asyncio.sleep(min(retry_s, max(deadline - time.monotonic(), 0.0)))
                retry_s = min(retry_s * 2, _RETRY_MAX_S)
        if self._queue:
            _DROPPED.inc(len(self._queue))
            log.warning("dropped %d cache hits not reported to the adapters at shutdown", len(self._queue))
            metrics.CACHE_REPORT_QUEUE.dec(len(self._queue))
            self._queue.clear()
            self._bytes = 0
