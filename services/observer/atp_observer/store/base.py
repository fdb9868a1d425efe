"""The store interface both backends implement, with the checks and reward logic they share."""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.store.console import ObservationFilters
from atp_observer.store.layout import (
    OBS_COST,
    OBS_DECISION_ID,
    OBS_FEATURES,
    OBS_FINISH_REASON,
    OBS_LATENCY,
    OBS_MODEL,
    OBS_POLICY,
    OBS_PROPENSITY,
    OBS_ROUTE,
    OBS_STATUS,
    OBS_TENANT,
)
from atp_observer.store.rewards import RewardModel

MAX_LIST_LIMIT = 1000
MAX_REWARDS_LIMIT = 10_000


def check_feedback(req: observer_pb2.RecordFeedbackRequest) -> None:
    """Refuse feedback that can never be valid."""
    if not req.decision_id:
        raise InvalidArgument("feedback needs a decision_id", param="decision_id")
    if not (0.0 <= req.score <= 1.0) or math.isnan(req.score):
        raise InvalidArgument(f"score {req.score} is outside 0..1", param="score")


def check_page(before: datetime | None, before_observation_id: str) -> None:
    """Refuse a page key without its timestamp: the keyset is (started_at, observation_id)."""
    if before_observation_id and before is None:
        raise InvalidArgument("before_observation_id needs before", param="before_observation_id")


def check_limit(limit: int, maximum: int) -> int:
    """A positive limit, capped so a single answer stays bounded."""
    if limit <= 0:
        raise InvalidArgument(f"limit must be positive, got {limit}", param="limit")
    return min(limit, maximum)


class Store(abc.ABC):
    """Durable storage of observations, feedback and reward events; one implementation per database.

    Use as `async with open_store(...) as store:` or call `open()` and `close()` yourself.
    """

    backend = ""  # the database's name, for status reports

    def __init__(self, *, reward_model: RewardModel, retention_days: int) -> None:
        if retention_days <= 0:
            raise InvalidArgument(f"retention_days must be positive, got {retention_days}")
        self.reward_model = reward_model
        self.retention_days = retention_days

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the database answers; raise Unavailable when it does not."""

    async def insert_observations(self, observations: Sequence[observer_pb2.Observation]) -> tuple[int, int]:
        """Store a batch in one transaction, with its reward events; return (stored, duplicates)."""
        (result,) = await self.insert_batches([observer_pb2.IngestRequest(observations=observations)])
        return result

    @abc.abstractmethod
    async def insert_batches(self, batches: Sequence[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        """Store several Ingest batches in one transaction, with their reward events; return (stored,
        duplicates) per batch. An observation repeated across batches counts as stored where it first
        appears. All or nothing: an invalid observation refuses every batch."""

    @abc.abstractmethod
    async def record_feedback(self, req: observer_pb2.RecordFeedbackRequest) -> tuple[str, bool]:
        """Store feedback and correct the decision's reward; return (feedback_id, joined)."""

    @abc.abstractmethod
    async def rewards_after(self, cursor: int, limit: int) -> list[observer_pb2.RewardEvent]:
        """Reward events with a cursor above `cursor`, in cursor order, at most `limit`."""

    @abc.abstractmethod
    async def query_usage(
        self,
        tenant: str,
        start: datetime | None,
        end: datetime | None,
        group_by: Sequence[str],
        bucket_s: int = 0,
    ) -> list[observer_pb2.UsageRow]:
        """Usage and cost over [start, end) grouped by any of usage.GROUPINGS, and by time buckets of
        `bucket_s` seconds when it is set (see console.check_bucket); empty tenant: all."""

    @abc.abstractmethod
    async def list_observations(
        self,
        tenant: str,
        limit: int,
        before: datetime | None,
        before_observation_id: str = "",
        filters: ObservationFilters | None = None,
    ) -> list[observer_pb2.Observation]:
        """One tenant's observations, newest first by (started_at, observation_id): with `before` only
        those that started earlier, and with `before_observation_id` also those that started exactly at
        `before` with a lower observation_id (the next page after an observation); narrowed by
        `filters`."""

    @abc.abstractmethod
    async def list_feedback(self, decision_id: str, tenant: str) -> list[observer_pb2.FeedbackRecord]:
        """The feedback `tenant` gave for `decision_id`, oldest first (at most console.MAX_FEEDBACK)."""

    @abc.abstractmethod
    async def arm_stats(self, route: str) -> tuple[list[observer_pb2.ArmStats], int]:
        """Arm statistics of `route` (empty: all) per model and per model and tenant, and their cursor."""

    @abc.abstractmethod
    async def get_decision(self, decision_id: str) -> observer_pb2.GetDecisionResponse | None:
        """The decision recorded with an observation, or None."""

    @abc.abstractmethod
    async def record_audit(self, entry: observer_pb2.AuditEntry) -> tuple[int, bool]:
        """Append an admin action (checked by audit.check_entry); return (seq, duplicate): a second entry
        with the same audit_id is not stored and returns the first one's seq."""

    @abc.abstractmethod
    async def list_audit(
        self, tenant: str, start: datetime | None, end: datetime | None, limit: int, before_seq: int = 0
    ) -> list[observer_pb2.AuditEntry]:
        """Audit entries newest first: of `tenant` (empty: all), at or after `start`, before `end`, with a
        seq below `before_seq` when set; at most `limit`."""

    @abc.abstractmethod
    async def maintain(self, now: datetime | None = None) -> None:
        """Housekeeping: prepare upcoming storage and delete what is older than the retention."""

    # Shared reward logic: both backends compute rewards the same way.

    def fresh_rewards(
        self, rows: Iterable[Sequence[Any]], scores: dict[tuple[str, str], float], at: Any
    ) -> list[tuple[Any, ...]]:
        """Reward rows for newly stored observations rows (eligible ones), built from the row values the
        backend already converted; `scores` holds feedback by (decision_id, tenant)."""
        model = self.reward_model
        rewards = []
        for row in rows:
            decision_id, tenant, route = row[OBS_DECISION_ID], row[OBS_TENANT], row[OBS_ROUTE]
            quality = scores.get((decision_id, tenant))
            if quality is None:
                quality = model.proxy_quality(row[OBS_STATUS], row[OBS_FINISH_REASON])
                if quality is None:
                    continue
            cost_usd, latency_ms = row[OBS_COST], row[OBS_LATENCY]
            rewards.append(
                (
                    decision_id,
                    tenant,
                    route,
                    row[OBS_MODEL],
                    row[OBS_POLICY],
                    model.reward(route, quality, cost_usd, latency_ms),
                    quality,
                    cost_usd,
                    latency_ms,
                    row[OBS_PROPENSITY],
                    row[OBS_FEATURES],
                    False,
                    0.0,
                    0.0,
                    at,
                )
            )
        return rewards

    def correction(self, previous: Sequence[Any], score: float, at: Any) -> tuple[Any, ...]:
        """The reward row that replaces `previous` (a REWARD_COLUMNS row) now that feedback says `score`."""
        route, cost_usd, latency_ms = previous[2], previous[7], previous[8]
        return (
            *previous[:5],
            self.reward_model.reward(route, score, cost_usd, latency_ms),
            score,
            cost_usd,
            latency_ms,
            previous[9],
            previous[10],
            True,
            previous[5],
            previous[6],
            at,
        )
