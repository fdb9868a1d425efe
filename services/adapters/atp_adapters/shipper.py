"""Ships observations to the observer in batches over Ingest, spooling to disk while it is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc import aio

from atp.observer.v1 import observer_pb2
from atp_adapters import metrics
from atp_adapters.observation_log import FINAL, OPEN, ObservationLog
from atp_adapters.spool import Spool, SpoolFull

log = logging.getLogger("atp.adapters.shipper")

_INGEST = observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].methods_by_name["Ingest"]
INGEST_PATH = f"/{_INGEST.containing_service.full_name}/{_INGEST.name}"
# The key of IngestRequest.observations (length-delimited) on the wire.
_OBSERVATIONS_KEY = bytes([(_INGEST.input_type.fields_by_name["observations"].number << 3) | 2])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_observation(observation: observer_pb2.Observation) -> bytes:
    """One observation as an encoded IngestRequest entry: batches are these joined, with no copy."""
    payload: bytes = observation.SerializeToString()
    return _OBSERVATIONS_KEY + _varint(len(payload)) + payload


class ObservationShipper:
    """A bounded queue on the request path and one background task that delivers it.

    `submit` never awaits: it puts the observation on the queue, and only when the queue is full (the
    observer is far behind) writes it to the spool at once, so nothing is lost. Each observation is
    encoded as it is submitted, so a batch is one join of bytes: building and serializing a whole
    IngestRequest at once stalls the event loop in front of whichever request is in flight (figures in
    docs/design-notes.md, "Figures behind the code"). The task collects batches
    (up to `batch_size`, or whatever arrived within `interval_s`) and sends each in its own Ingest call
    with a deadline. A batch that is not acknowledged goes to the spool; while the observer is away (after
    a failure, with exponential backoff) or the queue is more than half full, batches go straight to the
    spool. When a delivery succeeds the spool is replayed, one acknowledged batch at a time, between live
    batches. The observer is idempotent on observation id, so a batch resent after a lost reply is not
    stored twice.
    """

    def __init__(
        self,
        channel: aio.Channel,
        spool: Spool,
        *,
        queue_size: int,
        batch_size: int,
        interval_s: float,
        timeout_s: float,
        backoff_max_s: float,
        observation_log: ObservationLog | None = None,
        log_sync_s: float = 1.0,
    ) -> None:
        # Ingest with the request already encoded (no serializer: the bytes go out as they are).
        self._ingest = channel.stream_unary(
            INGEST_PATH,
            request_serializer=None,
            response_deserializer=observer_pb2.IngestResponse.FromString,
        )
        self._spool = spool
        self._log = observation_log
        self._log_sync_s = log_sync_s
        # Each entry with the number of the log segment that holds it (None: not logged).
        self._queue: asyncio.Queue[tuple[int | None, bytes]] = asyncio.Queue(queue_size)
        self._high_water = max(queue_size // 2, 1)
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = 0.0
        self._retry_at = 0.0
        # The batch taken from the queue and not yet delivered or spooled; drain must not forget it.
        self._pending: list[tuple[int | None, bytes]] = []
        # Completed by submit() when the queue holds `_batch_missing` more observations (see _collect).
        self._batch_ready: asyncio.Future[None] | None = None
        self._batch_missing = 0
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        metrics.SPOOL_BYTES.set(spool.size_bytes)

    def start(self) -> None:
        """Move what a killed predecessor left in the log to the spool, then start the delivery task."""
        if self._log is not None:
            self._recover(self._log)
            self._sync_task = asyncio.create_task(self._sync_log(self._log), name="observation-log-sync")
        self._task = asyncio.create_task(self._run(), name="observation-shipper")

    def _recover(self, observation_log: ObservationLog) -> None:
        entries = observation_log.recover()
        for start in range(0, len(entries), self._batch_size):
            batch = entries[start : start + self._batch_size]
            # Synchronous at start, before any request: the spool's fsync makes them safe, then the
            # predecessor's segments go. A crash in between sends them twice; the observer keeps one.
            self._spool.append_serialized(b"".join(batch))
            metrics.OBSERVATIONS.labels("recovered").inc(len(batch))
        observation_log.drop_leftovers()
        metrics.SPOOL_BYTES.set(self._spool.size_bytes)
        if entries:
            log.info("recovered %d observations from a previous process's log", len(entries))

    async def _sync_log(self, observation_log: ObservationLog) -> None:
        # The cadence at which a machine crash (not a process's) can cost observations.
        while True:
            await asyncio.sleep(self._log_sync_s)
            try:
                await observation_log.sync()
            except OSError:
                log.exception("fsync of the observation log failed")

    def open(self, observation: observer_pb2.Observation) -> int | None:
        """Log a stream's observation as it reads if the stream is cut (its process dies) before `submit`
        supersedes it; returns the token to pass to `submit`. Nothing is shipped now."""
        if self._log is None:
            return None
        return self._log.append(OPEN, encode_observation(observation))

    def submit(self, observation: observer_pb2.Observation, opened: int | None = None) -> None:
        """Hand one observation over; never awaits. It is in the log (the kernel's hands) when this
        returns."""
        encoded = encode_observation(observation)
        seq = None
        if self._log is not None:
            seq = self._log.append(FINAL, encoded)
            self._log.settle(opened)
        try:
            self._queue.put_nowait((seq, encoded))
        except asyncio.QueueFull:
            # Last resort under overload: a synchronous spool write is slower, but loses nothing.
            self._spool_batch([(seq, encoded)])
            return
        size = self._queue.qsize()
        metrics.OBSERVATION_QUEUE.set(size)
        batch_ready = self._batch_ready
        if batch_ready is not None and size >= self._batch_missing and not batch_ready.done():
            batch_ready.set_result(None)

    @property
    def backlog(self) -> tuple[int, int]:
        """Observations not yet delivered: (queued or in a batch being sent, spool bytes)."""
        return self._queue.qsize() + len(self._pending), self._spool.size_bytes

    @property
    def observer_reachable(self) -> bool:
        """False while backing off after a failed delivery."""
        return time.monotonic() >= self._retry_at

    def _take_queued(self, pending: list[tuple[int | None, bytes]]) -> None:
        queue = self._queue
        while len(pending) < self._batch_size and not queue.empty():
            pending.append(queue.get_nowait())

    async def _collect(self) -> None:
        # Collects into self._pending, so a cancellation (timeout or drain) never loses what was taken.
        pending = self._pending
        if not pending:
            pending.append(await self._queue.get())
        deadline = time.monotonic() + self._interval_s
        self._take_queued(pending)
        # One wait per batch, not one per observation: submit() completes `_batch_ready` once the queue
        # holds what the batch is missing, else the interval runs out.
        while len(pending) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._batch_missing = self._batch_size - len(pending)
            self._batch_ready = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._batch_ready, remaining)
            except TimeoutError:
                pass
            finally:
                self._batch_ready = None
            self._take_queued(pending)
        metrics.OBSERVATION_QUEUE.set(self._queue.qsize())

    async def _run(self) -> None:
        while True:
            if self._spool.has_pending() and self.observer_reachable and self._queue.empty():
                await self._replay_one()
                continue
            try:
                # Wake up for spool replay even with no live traffic.
                timeout = (
                    None if not self._spool.has_pending() else max(self._retry_at - time.monotonic(), 0.05)
                )
                await asyncio.wait_for(self._collect(), timeout)
            except TimeoutError:
                continue
            await self._deliver_pending()

    async def _deliver_pending(self) -> None:
        batch = self._pending
        if self.observer_reachable and self._queue.qsize() < self._high_water:
            if await self._send(b"".join(entry for _, entry in batch)):
                metrics.OBSERVATIONS.labels("shipped").inc(len(batch))
                self._pending = []
                self._settle(batch)
                return
        self._spool_batch(batch)
        self._pending = []

    async def _replay_one(self) -> None:
        item = self._spool.peek()
        if item is None:
            metrics.SPOOL_BYTES.set(self._spool.size_bytes)
            return
        request, end = item
        if not request.observations or await self._send(request.SerializeToString()):
            self._spool.commit(end)
            metrics.OBSERVATIONS.labels("replayed").inc(len(request.observations))
            metrics.SPOOL_BYTES.set(self._spool.size_bytes)

    async def _send(self, request: bytes) -> bool:
        """Deliver one encoded IngestRequest; False (and the backoff advanced) when it was not taken."""
        try:
            await self._ingest(iter((request,)), timeout=self._timeout_s)
        except aio.AioRpcError as exc:
            self._backoff_s = min(max(self._backoff_s * 2, 0.1), self._backoff_max_s)
            self._retry_at = time.monotonic() + self._backoff_s
            level = logging.DEBUG if exc.code() == grpc.StatusCode.UNAVAILABLE else logging.WARNING
            log.log(
                level,
                "observer did not take a batch (%s); retrying in %.2fs",
                exc.code().name,
                self._backoff_s,
            )
            return False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        return True

    def _settle(self, batch: list[tuple[int | None, bytes]]) -> None:
        if self._log is not None:
            self._log.settle_all([seq for seq, _ in batch])
            self._log.rotate_if_settled()

    def _spool_batch(self, batch: list[tuple[int | None, bytes]]) -> None:
        try:
            self._spool.append_serialized(b"".join(entry for _, entry in batch))
        except (SpoolFull, OSError):
            # Bounded disk wins over completeness; loud, counted, never silent. The log lets them go too:
            # kept there, they would fill it and be sent again by the next process.
            log.exception("dropping %d observations: the spool cannot take them", len(batch))
            metrics.OBSERVATIONS.labels("dropped").inc(len(batch))
            self._settle(batch)
            return
        metrics.OBSERVATIONS.labels("spooled").inc(len(batch))
        metrics.SPOOL_BYTES.set(self._spool.size_bytes)
        self._settle(batch)

    async def close(self, timeout_s: float) -> None:
        """Stop the task, deliver what is queued within `timeout_s`, and spool whatever is left."""
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._sync_task = None
        leftover = self._pending
        self._pending = []
        while not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        deadline = time.monotonic() + timeout_s
        reachable = True
        for start in range(0, len(leftover), self._batch_size):
            batch = leftover[start : start + self._batch_size]
            remaining = deadline - time.monotonic()
            if reachable and remaining > 0:
                try:
                    await self._ingest(
                        iter((b"".join(entry for _, entry in batch),)),
                        timeout=min(remaining, self._timeout_s),
                    )
                except aio.AioRpcError as exc:
                    log.warning("observer unreachable at drain (%s); spooling the rest", exc.code().name)
                    reachable = False
                else:
                    metrics.OBSERVATIONS.labels("shipped").inc(len(batch))
                    self._settle(batch)
                    continue
            self._spool_batch(batch)
        metrics.OBSERVATION_QUEUE.set(0)
        self._spool.close()
        if self._log is not None:
            self._log.close()
