"""Feedback and the read side: usage, a tenant's observations, arm statistics and recorded decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument, NotFound
from atp_common.privacy import PrivacyPolicy
from atp_observer import metrics
from atp_observer.ingest import is_transient
from atp_observer.store.audit import DEFAULT_AUDIT_LIMIT
from atp_observer.store.base import MAX_LIST_LIMIT, Store
from atp_observer.store.console import ObservationFilters

DEFAULT_LIST_LIMIT = 100


def _time(message: object, field: str) -> datetime | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(message, field)
    when: datetime = stamp.ToDatetime(tzinfo=UTC)
    return when


class Queries:
    """The observer's unary RPCs other than Ingest. The tenant is taken as given: the gateway enforces roles."""

    def __init__(
        self, store: Store, *, on_reward: Callable[[], None], privacy: PrivacyPolicy | None = None
    ) -> None:
        self._store = store
        self._on_reward = on_reward
        self._privacy = privacy

    async def record_feedback(
        self, request: observer_pb2.RecordFeedbackRequest
    ) -> observer_pb2.RecordFeedbackResponse:
        """Store feedback; joined says whether the decision's observation was already there."""
        if not request.tenant:
            raise InvalidArgument("feedback needs the caller's tenant", param="tenant")
        if request.comment and self._privacy is not None:
            # Whoever sent it (the gateway or an internal caller), PII is gone before the comment is stored.
            comment = await self._privacy.redact_for_storage(request.tenant, request.comment)
            if comment != request.comment:
                redacted = observer_pb2.RecordFeedbackRequest()
                redacted.CopyFrom(request)
                redacted.comment = comment
                request = redacted
        try:
            feedback_id, joined = await self._store.record_feedback(request)
        except Exception as exc:
            if is_transient(exc):
                metrics.DB_ERRORS.labels("feedback").inc()
            raise
        metrics.FEEDBACK.labels(str(joined).lower()).inc()
        if joined:
            self._on_reward()  # A joined late feedback made a correction event.
        return observer_pb2.RecordFeedbackResponse(feedback_id=feedback_id, joined=joined)

    async def query_usage(self, request: observer_pb2.QueryUsageRequest) -> observer_pb2.QueryUsageResponse:
        """Usage and cost over [start, end), grouped as asked; an empty tenant means all (admin callers)."""
        start, end = _time(request, "start"), _time(request, "end")
        if start and end and end < start:
            raise InvalidArgument("end is before start", param="end")
        rows = await self._store.query_usage(
            request.tenant, start, end, list(request.group_by), request.bucket_seconds
        )
        return observer_pb2.QueryUsageResponse(rows=rows)

    async def list_observations(
        self, request: observer_pb2.ListObservationsRequest
    ) -> observer_pb2.ListObservationsResponse:
        """A tenant's most recent observations, newest first, paged by (`before`, `before_observation_id`)."""
        if request.limit < 0:
            raise InvalidArgument("limit must not be negative", param="limit")
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        filters = ObservationFilters(
            model=request.model, route=request.route, status=request.status, after=_time(request, "after")
        )
        observations = await self._store.list_observations(
            request.tenant, limit, _time(request, "before"), request.before_observation_id, filters
        )
        return observer_pb2.ListObservationsResponse(observations=observations)

    async def get_arm_stats(
        self, request: observer_pb2.GetArmStatsRequest
    ) -> observer_pb2.GetArmStatsResponse:
        """Arm statistics and the reward cursor they include."""
        arms, cursor = await self._store.arm_stats(request.route)
        return observer_pb2.GetArmStatsResponse(arms=arms, cursor=cursor)

    async def get_decision(
        self, request: observer_pb2.GetDecisionRequest
    ) -> observer_pb2.GetDecisionResponse:
        """The decision stored with an observation."""
        if not request.decision_id:
            raise InvalidArgument("decision_id is required", param="decision_id")
        found = await self._store.get_decision(request.decision_id)
        if found is None:
            raise NotFound(f"no decision {request.decision_id}")
        return found

    async def list_feedback(
        self, request: observer_pb2.ListFeedbackRequest
    ) -> observer_pb2.ListFeedbackResponse:
        """One tenant's feedback for one decision, oldest first."""
        if not request.decision_id:
            raise InvalidArgument("decision_id is required", param="decision_id")
        if not request.tenant:
            raise InvalidArgument("tenant is required", param="tenant")
        records = await self._store.list_feedback(request.decision_id, request.tenant)
        return observer_pb2.ListFeedbackResponse(feedback=records)

    async def record_audit(
        self, request: observer_pb2.RecordAuditRequest
    ) -> observer_pb2.RecordAuditResponse:
        """Append an admin action's entry; a retried audit_id is stored once."""
        try:
            seq, duplicate = await self._store.record_audit(request.entry)
        except Exception as exc:
            if is_transient(exc):
                metrics.DB_ERRORS.labels("audit").inc()
            raise
        return observer_pb2.RecordAuditResponse(seq=seq, duplicate=duplicate)

    async def list_audit(self, request: observer_pb2.ListAuditRequest) -> observer_pb2.ListAuditResponse:
        """Audit entries newest first, of one tenant (empty: all), paged by `before_seq`."""
        if request.limit < 0 or request.before_seq < 0:
            raise InvalidArgument("limit and before_seq must not be negative", param="limit")
        start, end = _time(request, "start"), _time(request, "end")
        if start and end and end < start:
            raise InvalidArgument("end is before start", param="end")
        entries = await self._store.list_audit(
            request.tenant, start, end, request.limit or DEFAULT_AUDIT_LIMIT, request.before_seq
        )
        return observer_pb2.ListAuditResponse(entries=entries)

    async def store_status(self, ingest_pending: int) -> observer_pb2.GetStoreStatusResponse:
        """The backend's name and whether it answers a ping now (an outage is reported, not raised)."""
        status = observer_pb2.GetStoreStatusResponse(
            backend=self._store.backend, reachable=True, ingest_pending=ingest_pending
        )
        try:
            await self._store.ping()
        except Exception as exc:
            status.reachable = False
            status.error = f"{type(exc).__name__}: {exc}"[:500]
        return status
