"""Ships observations to the observer in batches over Ingest, spooling to disk while it is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc import aio

from atp.observer.v1 import observer_pb2
from atp_adapters import metrics
from atp_adapters.spool import Spool, SpoolFull

log = logging.getLogger("atp.adapters.shipper")

_INGEST = observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].methods_by_name["Ingest"]
INGEST_PATH = f"/{_INGEST.containing_service.full_name}/{_INGEST.name}"
# The keys of IngestRequest.observations and IngestRequest.rows (length-delimited) on the wire.
_OBSERVATIONS_KEY = bytes([(_INGEST.input_type.fields_by_name["observations"].number << 3) | 2])
_ROWS_KEY = bytes([(_INGEST.input_type.fields_by_name["rows"].number << 3) | 2])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_observation(observation: observer_pb2.Observation, row: bytes = b"") -> bytes:
    """One observation, and its row when given (atp_common.observation_rows), as encoded IngestRequest
    entries: batches are these joined, with no copy. Repeated fields may interleave on the wire, and each
    keeps its order, so the n-th row stays the n-th observation's; a batch holds rows for all its
    observations or (from an older spool) none, and the observer uses them only then."""
    payload = observation.SerializeToString()
    entry = _OBSERVATIONS_KEY + _varint(len(payload)) + payload
    if row:
        entry += _ROWS_KEY + _varint(len(row)) + row
    return entry


class ObservationShipper:
    """A bounded queue on the request path and one background task that delivers it.

    `submit` never awaits: it puts the observation on the queue, and only when the queue is full (the
    observer is far behind) writes it to the spool at once, so nothing is lost. Each observation is
    encoded as it is submitted (a few microseconds), so a batch is one join of bytes: building and
    serializing a 256-observation IngestRequest at once stalled the event loop for about a millisecond,
    twice a second, in front of whichever request was in flight. The task collects batches
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
    ) -> None:
        # Ingest with the request already encoded (no serializer: the bytes go out as they are).
        self._ingest = channel.stream_unary(
            INGEST_PATH,
            request_serializer=None,
            response_deserializer=observer_pb2.IngestResponse.FromString,
        )
        self._spool = spool
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._high_water = max(queue_size // 2, 1)
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = 0.0
        self._retry_at = 0.0
        # The batch taken from the queue and not yet delivered or spooled; drain must not forget it.
        self._pending: list[bytes] = []
        # Completed by submit() when the queue holds `_batch_missing` more observations (see _collect).
        self._batch_ready: asyncio.Future[None] | None = None
        self._batch_missing = 0
        self._task: asyncio.Task[None] | None = None
        metrics.SPOOL_BYTES.set(spool.size_bytes)

    def start(self) -> None:
        """Start the delivery task."""
        self._task = asyncio.create_task(self._run(), name="observation-shipper")

    def submit(self, observation: observer_pb2.Observation, row: bytes = b"") -> None:
        """Hand one observation over, with its row (see encode_observation); never awaits."""
        encoded = encode_observation(observation, row)
        try:
            self._queue.put_nowait(encoded)
        except asyncio.QueueFull:
            # Last resort under overload: a synchronous spool write is slower, but loses nothing.
            self._spool_batch([encoded])
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

    def _take_queued(self, pending: list[bytes]) -> None:
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
            if await self._send(b"".join(batch)):
                metrics.OBSERVATIONS.labels("shipped").inc(len(batch))
                self._pending = []
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

    def _spool_batch(self, batch: list[bytes]) -> None:
        try:
            self._spool.append_serialized(b"".join(batch))
        except (SpoolFull, OSError):
            # Bounded disk wins over completeness; loud, counted, never silent.
            log.exception("dropping %d observations: the spool cannot take them", len(batch))
            metrics.OBSERVATIONS.labels("dropped").inc(len(batch))
            return
        metrics.OBSERVATIONS.labels("spooled").inc(len(batch))
        metrics.SPOOL_BYTES.set(self._spool.size_bytes)

    async def close(self, timeout_s: float) -> None:
        """Stop the task, deliver what is queued within `timeout_s`, and spool whatever is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
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
                    await self._ingest(iter((b"".join(batch),)), timeout=min(remaining, self._timeout_s))
                except aio.AioRpcError as exc:
                    log.warning("observer unreachable at drain (%s); spooling the rest", exc.code().name)
                    reachable = False
                else:
                    metrics.OBSERVATIONS.labels("shipped").inc(len(batch))
                    continue
            self._spool_batch(batch)
        metrics.OBSERVATION_QUEUE.set(0)
        self._spool.close()
