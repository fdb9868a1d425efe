"""Ingest: a bounded buffer of observation batches, written by a few writers that ride out database outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from atp.observer.v1 import observer_pb2
from atp_common.errors import AtpError, Internal, InvalidArgument, Unavailable
from atp_observer import metrics
from atp_observer.store.base import Store

log = logging.getLogger("atp.observer.ingest")

try:  # asyncpg is a dependency, but only the PostgreSQL backend needs it loaded.
    import asyncpg

    _PG_TRANSIENT: tuple[type[BaseException], ...] = (
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.SerializationError,
        asyncpg.exceptions.DeadlockDetectedError,
    )
except ImportError:  # pragma: no cover
    _PG_TRANSIENT = ()

# What a database outage looks like from here; anything else is a bug or bad data and fails the batch.
_TRANSIENT: tuple[type[BaseException], ...] = (
    Unavailable,
    OSError,
    TimeoutError,
    sqlite3.OperationalError,
    *_PG_TRANSIENT,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write is worth retrying (the database is away or busy), not a bad batch."""
    return isinstance(exc, _TRANSIENT)


@dataclass(slots=True)
class _Batch:
    request: observer_pb2.IngestRequest
    size: int  # observations in the request
    done: asyncio.Future[tuple[int, int]]
    arrived: float


class IngestBuffer:
    """Batches waiting for a writer; bounded in observations.

    A free writer takes every batch waiting, up to `merge_observations`, and commits them in one
    transaction: under load the fixed cost of a transaction (its round trips, the reward lock, the WAL
    flush) is then shared by several batches, and when ingest is light each batch still goes alone at
    once. Senders await their batch's future, which resolves after commit. While the database is down the
    writers retry with exponential backoff and batches keep queueing until `capacity`; then `submit` waits
    up to `wait_s` for room and refuses with Unavailable, so the adapters spool instead of the observer
    growing.
    """

    def __init__(
        self,
        store: Store,
        *,
        capacity: int,
        writers: int,
        wait_s: float,
        retry_initial_s: float,
        retry_max_s: float,
        merge_observations: int = 1,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._capacity = capacity
        self._writer_count = max(1, writers)
        self._wait_s = wait_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._merge_observations = merge_observations
        self._on_commit = on_commit
        self._queue: deque[_Batch] = deque()
        # Observations queued or being written: what the capacity bounds.
        self._size = 0
        # One lock, two conditions: a new batch wakes one writer (not every writer and every waiting
        # sender), and a finished write wakes the senders waiting for room and close().
        self._lock = asyncio.Lock()
        self._work = asyncio.Condition(self._lock)
        self._room = asyncio.Condition(self._lock)
        self._writers: list[asyncio.Task[None]] = []
        self._closing = False
        self._outage_since: float | None = None

    @property
    def depth(self) -> int:
        """Observations waiting or being written."""
        return self._size

    def start(self) -> None:
        """Start the writer tasks."""
        self._writers = [
            asyncio.create_task(self._write_loop(), name=f"ingest-writer-{i}")
            for i in range(self._writer_count)
        ]

    async def submit(self, request: observer_pb2.IngestRequest) -> asyncio.Future[tuple[int, int]]:
        """Queue one batch; the returned future gives (stored, duplicates) once it is committed."""
        n = len(request.observations)
        async with self._lock:
            if self._closing:
                raise Unavailable("observer is shutting down", retry_after=1.0)

            # A batch larger than the free room still goes in when the buffer is empty, or it never would.
            def has_room() -> bool:
                return self._size == 0 or self._size + n <= self._capacity

            if not has_room():
                try:
                    await asyncio.wait_for(self._room.wait_for(has_room), self._wait_s)
                except TimeoutError:
                    metrics.PUSHBACKS.inc()
                    raise Unavailable(
                        f"ingest buffer full ({self._size} observations waiting)", retry_after=1.0
                    ) from None
                if self._closing:
                    raise Unavailable("observer is shutting down", retry_after=1.0)
            done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
            self._queue.append(_Batch(request, n, done, time.monotonic()))
            self._size += n
            metrics.BUFFER_DEPTH.set(self._size)
            self._work.notify()
            return done

    async def _next(self) -> list[_Batch]:
        """The oldest waiting batch and those behind it, while they fit in merge_observations."""
        async with self._lock:
            await self._work.wait_for(lambda: bool(self._queue))
            group = [self._queue.popleft()]
            total = group[0].size
            while self._queue and total + self._queue[0].size <= self._merge_observations:
                batch = self._queue.popleft()
                group.append(batch)
                total += batch.size
            if self._queue:
                self._work.notify()  # more than one merge holds: another writer can take the rest
            return group

    async def _write_loop(self) -> None:
        while True:
            group = await self._next()
            try:
                await self._write_group(group)
            finally:
                async with self._lock:
                    self._size -= sum(batch.size for batch in group)
                    metrics.BUFFER_DEPTH.set(self._size)
                    self._room.notify_all()

    async def _write_group(self, group: list[_Batch]) -> None:
        """Commit the group together; when that fails for a reason other than an outage, each batch
        alone, so one bad batch fails only its own sender."""
        try:
            results = await self._write([batch.request for batch in group])
        except Exception as exc:
            if len(group) > 1:
                for batch in group:
                    await self._write_group([batch])
                return
            (batch,) = group
            if not batch.done.done():
                batch.done.set_exception(
                    exc if isinstance(exc, AtpError) else Internal("storing the batch failed")
                )
            if not isinstance(exc, AtpError):
                log.error("storing a batch of %d failed", batch.size, exc_info=exc)
            return
        committed = time.monotonic()
        for batch, result in zip(group, results, strict=True):
            metrics.COMMIT_SECONDS.observe(committed - batch.arrived)
            metrics.BATCH_SIZE.observe(batch.size)
            metrics.INGESTED.labels("stored").inc(result[0])
            metrics.INGESTED.labels("duplicate").inc(result[1])
            # Observations the store refused alone (store/layout.py's observation_row), the rest stored.
            metrics.INGESTED.labels("invalid").inc(batch.size - result[0] - result[1])
            # The sender may have given up (deadline); the write still counts, and its resend dedups.
            if not batch.done.done():
                batch.done.set_result(result)
        if any(result[0] for result in results):
            self._on_commit()

    async def _write(self, batches: list[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        delay = self._retry_initial_s
        while True:
            try:
                results = await self._store.insert_batches(batches)
            except InvalidArgument:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                metrics.DB_ERRORS.labels("insert").inc()
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning("database unavailable, buffering observations: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if self._outage_since is not None:
                log.info(
                    "database back after %.1fs; writing buffered observations",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            return results

    async def close(self, flush_timeout_s: float) -> None:
        """Refuse new batches, write what is buffered (bounded by `flush_timeout_s`), stop the writers."""
        async with self._lock:
            self._closing = True
            self._room.notify_all()
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self._size == 0), flush_timeout_s)
            except TimeoutError:
                log.error("shutting down with %d observations unwritten (senders will resend)", self._size)
        for task in self._writers:
            task.cancel()
        for task in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for batch in self._queue:
            if not batch.done.done():
                batch.done.set_exception(Unavailable("observer shut down before the write", retry_after=1.0))
        self._queue.clear()


async def ingest_stream(
    buffer: IngestBuffer,
    requests: AsyncIterator[observer_pb2.IngestRequest],
    *,
    max_batch: int,
    commit_timeout_s: float,
) -> observer_pb2.IngestResponse:
    """Queue every batch of one Ingest call and reply once all of them are committed."""
    pending: list[asyncio.Future[tuple[int, int]]] = []
    try:
        async for request in requests:
            observations = request.observations
            if not observations:
                continue
            if len(observations) > max_batch:
                raise InvalidArgument(
                    f"batch of {len(observations)} observations exceeds {max_batch}", param="observations"
                )
            pending.append(await buffer.submit(request))
        # asyncio.wait, not wait_for(gather(...)): a sender that gives up cancels this handler, and a
        # cancelled gather keeps a CancelledError nobody retrieves, logged as an error on every such call.
        if pending:
            done, waiting = await asyncio.wait(
                pending, timeout=commit_timeout_s, return_when=asyncio.FIRST_EXCEPTION
            )
            for future in done:
                future.result()  # raises the error of a batch that failed
            if waiting:
                raise Unavailable("commit timed out; resend later", retry_after=1.0)
        results = [future.result() for future in pending]
    finally:
        # Futures of a call that failed half-way: nobody will read them, so the writers must not fail them.
        for future in pending:
            future.cancel()
    return observer_pb2.IngestResponse(
        stored=sum(r[0] for r in results), duplicates=sum(r[1] for r in results)
    )
