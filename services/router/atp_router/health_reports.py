"""Exclusions reported by adapters replicas (open circuits), merged into the snapshot the router publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable

from grpc import aio

from atp.router.v1 import health_report_pb2, health_report_pb2_grpc, router_pb2
from atp_common.errors import InvalidArgument
from atp_router import metrics

log = logging.getLogger("atp.router.health")

_MAX_REASON_CHARS = 200
_MAX_MODEL_CHARS = 256


class _Report:
    __slots__ = ("exclusions", "sequence")

    def __init__(self, sequence: int, exclusions: dict[str, tuple[float, str]]) -> None:
        self.sequence = sequence
        # model -> (until as Unix seconds, reason)
        self.exclusions = exclusions


class ReportedExclusions:
    """The latest report of each adapters replica, merged into one exclusion per model.

    A replica's report replaces its previous one (older sequences are ignored); each exclusion lapses at
    its `until`, so a replica that dies cannot keep a model excluded, and `until` is capped at
    `max_hold_s` from arrival. Every change hands the merged set to `publish` (the snapshot publisher's
    set_exclusions, coalesced and rate-bounded there); one owned task republishes when the earliest
    exclusion lapses. At most `max_replicas` replicas are remembered: beyond it the longest-quiet one is
    forgotten, and with it its exclusions.
    """

    def __init__(
        self,
        publish: Callable[[Iterable[router_pb2.Exclusion]], None],
        *,
        max_replicas: int,
        max_exclusions: int,
        max_hold_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish = publish
        self._max_replicas = max_replicas
        self._max_exclusions = max_exclusions
        self._max_hold_s = max_hold_s
        self._clock = clock
        self._reports: dict[str, _Report] = {}
        self._published: frozenset[str] = frozenset()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task that republishes when an exclusion lapses."""
        self._task = asyncio.create_task(self._expire(), name="exclusion-expiry")

    async def close(self) -> None:
        """Stop the expiry task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def excluded_models(self) -> frozenset[str]:
        """Models excluded by some replica's report at the last publish."""
        return self._published

    def apply(self, request: health_report_pb2.ReportExclusionsRequest) -> bool:
        """Take one replica's report; False when it is older than the one already applied."""
        if not request.replica_id:
            raise InvalidArgument("replica_id is required", param="replica_id")
        if len(request.exclusions) > self._max_exclusions:
            raise InvalidArgument(f"at most {self._max_exclusions} exclusions per report", param="exclusions")
        previous = self._reports.get(request.replica_id)
        if previous is not None and request.sequence <= previous.sequence:
            metrics.EXCLUSION_REPORTS.labels("stale").inc()
            return False
        now = self._clock()
        latest = now + self._max_hold_s
        exclusions: dict[str, tuple[float, str]] = {}
        for index, exclusion in enumerate(request.exclusions):
            if not exclusion.model or len(exclusion.model) > _MAX_MODEL_CHARS:
                raise InvalidArgument(
                    f"exclusions[{index}].model must be 1 to {_MAX_MODEL_CHARS} characters",
                    param=f"exclusions[{index}].model",
                )
            until = exclusion.until.ToNanoseconds() / 1e9 if exclusion.HasField("until") else latest
            if until > now:
                exclusions[exclusion.model] = (min(until, latest), exclusion.reason[:_MAX_REASON_CHARS])
        # Re-inserted at the end: the dict's order is least recently reported first.
        self._reports.pop(request.replica_id, None)
        self._reports[request.replica_id] = _Report(request.sequence, exclusions)
        while len(self._reports) > self._max_replicas:
            forgotten = next(iter(self._reports))
            del self._reports[forgotten]
            log.warning("forgetting the exclusions of replica %s: too many replicas reporting", forgotten)
        metrics.EXCLUSION_REPORTS.labels("applied").inc()
        self._refresh()
        return True

    def merged(self) -> list[router_pb2.Exclusion]:
        """One exclusion per model still in force: the one lasting longest, naming how many replicas."""
        now = self._clock()
        by_model: dict[str, tuple[float, str, str, int]] = {}
        for replica_id, report in self._reports.items():
            for model, (until, reason) in report.exclusions.items():
                if until <= now:
                    continue
                best = by_model.get(model)
                count = 1 if best is None else best[3] + 1
                if best is None or until > best[0]:
                    by_model[model] = (until, replica_id, reason, count)
                else:
                    by_model[model] = (*best[:3], count)
        merged = []
        for model in sorted(by_model):
            until, replica_id, reason, count = by_model[model]
            others = f" and {count - 1} more" if count > 1 else ""
            exclusion = router_pb2.Exclusion(
                model=model, reason=f"circuit open in adapters replica {replica_id}{others}: {reason}"
            )
            exclusion.until.FromNanoseconds(int(until * 1e9))
            merged.append(exclusion)
        return merged

    def _refresh(self) -> None:
        merged = self.merged()
        models = frozenset(e.model for e in merged)
        metrics.EXCLUDED_MODELS.set(len(models))
        if models != self._published:
            log.info("models excluded by reported circuits: %s", sorted(models) or "none")
        self._published = models
        # The publisher compares content: a report that changes nothing publishes nothing.
        self._publish(merged)
        self._changed.set()

    def _next_expiry(self) -> float:
        return min(
            (until for report in self._reports.values() for until, _ in report.exclusions.values()),
            default=math.inf,
        )

    async def _expire(self) -> None:
        while True:
            self._changed.clear()
            wait_s = self._next_expiry() - self._clock()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if math.isinf(wait_s) else wait_s):
                        await self._changed.wait()
                continue
            # Drop what lapsed (so the snapshot stays small and the lapse is published), then wait again.
            now = self._clock()
            for report in self._reports.values():
                report.exclusions = {m: e for m, e in report.exclusions.items() if e[0] > now}
            self._refresh()


class HealthReportServicer(health_report_pb2_grpc.HealthReportServiceServicer):
    """ReportExclusions: adapters replicas tell the router which models their circuits exclude."""

    def __init__(self, reports: ReportedExclusions) -> None:
        self._reports = reports

    async def ReportExclusions(
        self, request: health_report_pb2.ReportExclusionsRequest, context: aio.ServicerContext
    ) -> health_report_pb2.ReportExclusionsResponse:
        applied = self._reports.apply(request)
        return health_report_pb2.ReportExclusionsResponse(
            applied=applied, excluded_models=sorted(self._reports.excluded_models)
        )
