"""Tells the router which models this replica's circuits exclude, off the request path."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from grpc import aio

from atp.router.v1 import health_report_pb2, health_report_pb2_grpc, router_pb2
from atp_adapters import metrics

log = logging.getLogger("atp.adapters.circuits")


class CircuitReporter:
    """Sends this replica's whole current set of circuit exclusions on every change.

    A transition only sets an event (`mark_dirty`, microseconds on the request path); one owned task sends
    the latest set, so a burst of transitions costs one call. Each call has a deadline; a failed one is
    retried with bounded exponential backoff and jitter, and `reconnected` (the policy watch got through
    to a router again) sends the set once more, for a router that restarted and forgot it. Sequence
    numbers come from the wall clock, so a restarted replica's reports replace its predecessor's.
    """

    def __init__(
        self,
        channel: aio.Channel,
        current: Callable[[], list[router_pb2.Exclusion]],
        *,
        replica_id: str,
        timeout_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        dirty: asyncio.Event | None = None,
    ) -> None:
        self._stub = health_report_pb2_grpc.HealthReportServiceStub(channel)
        self._current = current
        self._replica_id = replica_id
        self._timeout_s = timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        # Given when the set's owner must wake the reporter and is built first (CircuitExclusions).
        self._dirty = dirty if dirty is not None else asyncio.Event()
        self._sequence = 0
        self._task: asyncio.Task[None] | None = None
        # What the router acknowledged last (None: nothing yet), for tests and diagnostics.
        self.delivered: health_report_pb2.ReportExclusionsRequest | None = None

    def mark_dirty(self) -> None:
        """The set changed: send it soon."""
        self._dirty.set()

    def reconnected(self) -> None:
        """The router may have restarted: repeat the set if there is anything it should know."""
        if self._current() or (self.delivered is not None and self.delivered.exclusions):
            self._dirty.set()

    def start(self) -> None:
        """Start the sending task."""
        self._task = asyncio.create_task(self._run(), name="circuit-report")

    async def close(self) -> None:
        """Stop sending (a call in flight is cancelled; the router lets the last report lapse)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _next_sequence(self) -> int:
        self._sequence = max(self._sequence + 1, time.time_ns())
        return self._sequence

    async def _run(self) -> None:
        backoff = self._backoff_initial_s
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            request = health_report_pb2.ReportExclusionsRequest(
                replica_id=self._replica_id, sequence=self._next_sequence(), exclusions=self._current()
            )
            try:
                reply = await self._stub.ReportExclusions(request, timeout=self._timeout_s)
            except aio.AioRpcError as exc:
                metrics.CIRCUIT_REPORTS.labels("failed").inc()
                log.info("reporting circuits to the router failed (%s); retrying", exc.code().name)
                # Whatever is current when the retry goes is what gets sent.
                self._dirty.set()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            backoff = self._backoff_initial_s
            self.delivered = request
            metrics.CIRCUIT_REPORTS.labels("ok").inc()
            log.info(
                "circuits reported to the router",
                extra={
                    "excluded_here": [e.model for e in request.exclusions],
                    "excluded": list(reply.excluded_models),
                },
            )
