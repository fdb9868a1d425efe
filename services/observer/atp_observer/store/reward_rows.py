"""Reward rows as both backends write and read them: the columns, the events they make, arm sums."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atp.observer.v1 import observer_pb2
from atp_observer.store.layout import OBS_DECISION_ID, OBS_ROUTE, OBS_STATUS

# Columns of `reward_events` that an append writes (the cursor is assigned by the database).
REWARD_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "tenant",
    "route",
    "model",
    "policy",
    "reward",
    "quality",
    "cost_usd",
    "latency_ms",
    "propensity",
    "features",
    "correction",
    "previous_reward",
    "previous_quality",
    "at",
)
REWARD_FEATURES, REWARD_AT = 10, 14

_CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED


def reward_event(row: Sequence[Any], features: Sequence[float], at_micros: int) -> observer_pb2.RewardEvent:
    """The RewardEvent proto of a `cursor, *REWARD_COLUMNS` row."""
    event = observer_pb2.RewardEvent(
        cursor=row[0],
        decision_id=row[1],
        tenant=row[2],
        route=row[3],
        model=row[4],
        policy=row[5],
        reward=row[6],
        quality=row[7],
        cost_usd=row[8],
        latency_ms=row[9],
        propensity=row[10],
        features=features,
        correction=bool(row[12]),
        previous_reward=row[13],
        previous_quality=row[14],
    )
    event.at.FromMicroseconds(at_micros)
    return event


def eligible_for_reward(row: Sequence[Any]) -> bool:
    """Whether an observations row earns a reward event: a routed decision that was not cancelled."""
    return bool(row[OBS_ROUTE]) and bool(row[OBS_DECISION_ID]) and row[OBS_STATUS] != _CANCELLED


def arm_stats_row(row: Sequence[Any]) -> observer_pb2.ArmStats:
    """ArmStats from `route, model, tenant, pulls, reward, reward^2, quality, cost, latency` sums."""
    return observer_pb2.ArmStats(
        route=row[0],
        model=row[1],
        tenant=row[2] or "",
        pulls=row[3],
        reward_sum=row[4],
        reward_sq_sum=row[5],
        quality_sum=row[6],
        cost_sum=row[7],
        latency_sum=row[8],
    )
