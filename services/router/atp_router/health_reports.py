"""Exclusions reported by adapters replicas (open circuits), merged into the snapshot the router publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable

from google.protobuf.message import DecodeError
from grpc import aio

from atp.router.v1 import health_report_pb2, health_report_pb2_grpc, router_pb2
from atp_common.errors import InvalidArgument
from atp_common.tasks import cancel_and_wait
from atp_router import metrics
from atp_router.exclusion_share import ExclusionShare

log = logging.getLogger("atp.router.health")

_MAX_REASON_CHARS = 200
_MAX_MODEL_CHARS = 256
_MAX_REPLICA_ID_CHARS = 256
# How long a shared report outlives its last exclusion: a delayed older report from the same replica (the
# adapters' call deadline is seconds) must still find the newer sequence and be ignored.
_REMEMBER_SEQUENCE_S = 60.0


class _Report:
    __slots__ = ("exclusions", "sequence")

    def __init__(self, sequence: int, exclusions: dict[str, tuple[float, str]]) -> None:
        self.sequence = sequence
        # model -> (until as Unix seconds, reason)
        self.exclusions = exclusions

    def encode(self, replica_id: str) -> bytes:
        """The report as shared with the other router replicas (until already capped, reasons cut)."""
        request = health_report_pb2.ReportExclusionsRequest(replica_id=replica_id, sequence=self.sequence)
        for model, (until, reason) in self.exclusions.items():
            request.exclusions.add(model=model, reason=reason).until.FromNanoseconds(int(until * 1e9))
        encoded: bytes = request.SerializeToString()
        return encoded


class ReportedExclusions:
    """The latest report of each adapters replica, merged into one exclusion per model.

    A replica's report replaces its previous one (older sequences are ignored); each exclusion lapses at
    its `until`, so a replica that dies cannot keep a model excluded, and `until` is capped at
    `max_hold_s` from arrival. Every change hands the merged set to `publish` (the snapshot publisher's
    set_exclusions, coalesced and rate-bounded there); one owned task republishes when the earliest
    exclusion lapses. At most `max_replicas` replicas are remembered: beyond it the longest-quiet one is
    forgotten, and with it its exclusions.

    With a `share` (Redis), every report taken here is also written there, atomically checked against the
    sequence another router replica may already hold, and a second owned task polls the share's version
    every `share_poll_s` and merges every replica's reports, so an exclusion reported to any router replica
    reaches every one's snapshot. While the share is unreachable the merge falls back to the reports taken
    here (logged once, `atp_router_exclusion_share_up` 0); when it is back they are written again, so the
    other replicas learn what was reported during the outage.
    """

    def __init__(
        self,
        publish: Callable[[Iterable[router_pb2.Exclusion]], None],
        *,
        max_replicas: int,
        max_exclusions: int,
        max_hold_s: float,
        share: ExclusionShare | None = None,
        share_poll_s: float = 0.25,
        share_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish = publish
        self._max_replicas = max_replicas
        self._max_exclusions = max_exclusions
        self._max_hold_s = max_hold_s
        self._share = share
        self._share_poll_s = share_poll_s
        self._share_timeout_s = share_timeout_s
        self._clock = clock
        # Reports taken by this replica (all there is without a share, the fallback while it is away) ...
        self._reports: dict[str, _Report] = {}
        # ... and every router replica's, as last read from the share (empty while it is away).
        self._shared: dict[str, _Report] = {}
        self._shared_version: str | None = None
        self._share_up = True
        # Set by every failure: some report taken here may be missing from the share.
        self._rewrite = False
        self._published: frozenset[str] = frozenset()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Read the shared reports once (bounded), then start the expiry task and the share's follower."""
        if self._share is not None:
            metrics.EXCLUSION_SHARE_UP.set(1)
            await self._sync()
            self._follow_task = asyncio.create_task(self._follow(), name="exclusion-share-follow")
        self._task = asyncio.create_task(self._expire(), name="exclusion-expiry")

    async def close(self) -> None:
        """Stop the expiry and follower tasks and close the share."""
        self._closing = True
        tasks = (self._task, self._follow_task)
        self._task = self._follow_task = None
        await cancel_and_wait(*tasks)
        if self._share is not None:
            await self._share.close()

    @property
    def excluded_models(self) -> frozenset[str]:
        """Models excluded by some replica's report at the last publish."""
        return self._published

    async def apply(self, request: health_report_pb2.ReportExclusionsRequest) -> bool:
        """Take one replica's report; False when it is older than the one already applied."""
        replica_id = request.replica_id
        if not replica_id or len(replica_id) > _MAX_REPLICA_ID_CHARS:
            raise InvalidArgument(
                f"replica_id must be 1 to {_MAX_REPLICA_ID_CHARS} characters", param="replica_id"
            )
        if len(request.exclusions) > self._max_exclusions:
            raise InvalidArgument(f"at most {self._max_exclusions} exclusions per report", param="exclusions")
        for index, exclusion in enumerate(request.exclusions):
            if not exclusion.model or len(exclusion.model) > _MAX_MODEL_CHARS:
                raise InvalidArgument(
                    f"exclusions[{index}].model must be 1 to {_MAX_MODEL_CHARS} characters",
                    param=f"exclusions[{index}].model",
                )
        known = [r.sequence for r in (self._reports.get(replica_id), self._shared.get(replica_id)) if r]
        if known and request.sequence <= max(known):
            return self._stale()
        now = self._clock()
        latest = now + self._max_hold_s
        exclusions: dict[str, tuple[float, str]] = {}
        for exclusion in request.exclusions:
            until = exclusion.until.ToNanoseconds() / 1e9 if exclusion.HasField("until") else latest
            if until > now:
                exclusions[exclusion.model] = (min(until, latest), exclusion.reason[:_MAX_REASON_CHARS])
        report = _Report(request.sequence, exclusions)
        if self._share is not None and not self._share_up:
            self._rewrite = True  # written when the share is back
        elif self._share is not None:
            try:
                stored = await self._write(replica_id, report, now)
            except Exception as exc:  # an outage must not refuse the report: it still counts here
                self._share_failed(exc)
            else:
                if not stored:  # another router replica holds a newer report of this replica
                    return self._stale()
        previous = self._reports.get(replica_id)
        if previous is not None and request.sequence <= previous.sequence:  # a newer one landed meanwhile
            return self._stale()
        # Re-inserted at the end: the dict's order is least recently reported first.
        self._reports.pop(replica_id, None)
        self._reports[replica_id] = report
        while len(self._reports) > self._max_replicas:
            forgotten = next(iter(self._reports))
            del self._reports[forgotten]
            log.warning("forgetting the exclusions of replica %s: too many replicas reporting", forgotten)
        metrics.EXCLUSION_REPORTS.labels("applied").inc()
        self._refresh()
        return True

    @staticmethod
    def _stale() -> bool:
        metrics.EXCLUSION_REPORTS.labels("stale").inc()
        return False

    def _current(self) -> dict[str, _Report]:
        """Each replica's newest report, whichever router replica took it."""
        current = dict(self._shared)
        for replica_id, report in self._reports.items():
            shared = current.get(replica_id)
            if shared is None or report.sequence > shared.sequence:
                current[replica_id] = report
        return current

    def merged(self) -> list[router_pb2.Exclusion]:
        """One exclusion per model still in force: the one lasting longest, naming how many replicas."""
        now = self._clock()
        by_model: dict[str, tuple[float, str, str, int]] = {}
        # In replica order, so every router replica words a tie the same way.
        for replica_id, report in sorted(self._current().items()):
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
            (
                until
                for reports in (self._reports, self._shared)
                for report in reports.values()
                for until, _ in report.exclusions.values()
            ),
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
            # Every router replica does this at the same `until`: a lapse needs no write to the share.
            now = self._clock()
            for reports in (self._reports, self._shared):
                for report in reports.values():
                    report.exclusions = {m: e for m, e in report.exclusions.items() if e[0] > now}
            self._refresh()

    # The share (only with one configured).

    async def _write(self, replica_id: str, report: _Report, now: float) -> bool:
        assert self._share is not None
        last_until = max((until for until, _ in report.exclusions.values()), default=now)
        # Kept while an exclusion is in force, and a while after to recognise delayed older reports.
        forget_at = max(last_until, now + min(_REMEMBER_SEQUENCE_S, self._max_hold_s))
        async with asyncio.timeout(self._share_timeout_s):
            return await self._share.write(
                replica_id,
                report.sequence,
                report.encode(replica_id),
                forget_at=forget_at,
                now=now,
                max_replicas=self._max_replicas,
            )

    async def _follow(self) -> None:
        # Not only cancellation ends this loop: on Python 3.11 a cancel that lands as one of the Redis
        # client's inner wait_for calls completes is lost, and the loop would poll on after close().
        while not self._closing:
            await asyncio.sleep(self._share_poll_s)
            await self._sync()

    async def _sync(self) -> None:
        """Reload the shared reports when their version moved (one GET when it did not)."""
        assert self._share is not None
        try:
            async with asyncio.timeout(self._share_timeout_s):
                version = await self._share.version()
            if self._rewrite or (version is None and self._reports):
                # After a failure (or the store lost everything): the reports taken here are written again
                # (sequence-checked), so the other router replicas learn what they missed.
                self._rewrite = False
                now = self._clock()
                for replica_id, report in list(self._reports.items()):
                    await self._write(replica_id, report, now)
            elif version == self._shared_version:
                return
            async with asyncio.timeout(self._share_timeout_s):
                version, raw = await self._share.load()
        except Exception as exc:  # the reports taken here keep routing while the share is away
            self._share_failed(exc)
            return
        self._shared = self._decode(raw)
        self._shared_version = version
        if not self._share_up:
            self._share_up = True
            metrics.EXCLUSION_SHARE_UP.set(1)
            log.info("exclusion share reachable again", extra={"store": self._share.name})
        self._refresh()

    def _decode(self, raw: Iterable[bytes]) -> dict[str, _Report]:
        now = self._clock()
        latest = now + self._max_hold_s
        shared: dict[str, _Report] = {}
        for blob in raw:
            if len(shared) >= self._max_replicas:
                break
            try:
                request = health_report_pb2.ReportExclusionsRequest.FromString(blob)
            except DecodeError:
                log.warning("ignoring an undecodable shared exclusion report")
                continue
            exclusions = {
                e.model: (min(e.until.ToNanoseconds() / 1e9, latest), e.reason[:_MAX_REASON_CHARS])
                for e in request.exclusions[: self._max_exclusions]
                if e.model and e.until.ToNanoseconds() / 1e9 > now
            }
            shared[request.replica_id] = _Report(request.sequence, exclusions)
        return shared

    def _share_failed(self, exc: Exception) -> None:
        metrics.EXCLUSION_SHARE_ERRORS.inc()
        self._rewrite = True
        if not self._share_up:
            return
        self._share_up = False
        metrics.EXCLUSION_SHARE_UP.set(0)
        name = self._share.name if self._share is not None else ""
        log.error(
            "exclusion share unreachable; merging only the reports taken by this replica",
            extra={"store": name, "error": f"{type(exc).__name__}: {exc}"},
        )
        self._shared = {}
        self._shared_version = None
        self._refresh()


class HealthReportServicer(health_report_pb2_grpc.HealthReportServiceServicer):
    """ReportExclusions: adapters replicas tell the router which models their circuits exclude."""

    def __init__(self, reports: ReportedExclusions) -> None:
        self._reports = reports

    async def ReportExclusions(
        self, request: health_report_pb2.ReportExclusionsRequest, context: aio.ServicerContext
    ) -> health_report_pb2.ReportExclusionsResponse:
        applied = await self._reports.apply(request)
        return health_report_pb2.ReportExclusionsResponse(
            applied=applied, excluded_models=sorted(self._reports.excluded_models)
        )
