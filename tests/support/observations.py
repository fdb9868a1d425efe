"""Observations, batches and feedback for the observer's store tests, and store factories per backend."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_observer.store import PostgresStore, RewardModel, RewardWeights, SqliteStore, Store

OK = observer_pb2.ObservationStatus.OBSERVATION_STATUS_OK
ERROR = observer_pb2.ObservationStatus.OBSERVATION_STATUS_ERROR
PARTIAL = observer_pb2.ObservationStatus.OBSERVATION_STATUS_PARTIAL
CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED

# reward = quality - 10 * cost_usd - 0.5 * latency_seconds on `auto`; no penalties elsewhere.
REWARDS = RewardModel({"auto": RewardWeights(cost_weight=10.0, latency_weight=0.5)})
_ids = itertools.count(1)


def make_obs(
    *,
    tenant: str = "acme",
    route: str = "auto",
    model: str = "small",
    status: int = OK,
    finish_reason: str = "stop",
    cost_usd: float = 0.01,
    latency_ms: float = 200.0,
    started: datetime | None = None,
    decision: bool = True,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
) -> observer_pb2.Observation:
    """A fully populated observation with unique ids."""
    n = next(_ids)
    started = started or datetime.now(UTC) - timedelta(minutes=5)
    obs = observer_pb2.Observation(
        observation_id=f"obs-{n}",
        request_id=f"req-{n}",
        tenant=tenant,
        model=model,
        provider="local",
        prompt_hash=f"hash-{n}",
        prompt_text="hello",
        usage=chat_pb2.Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_prompt_tokens=2,
            reasoning_tokens=1,
            estimated=True,
            cache_write_tokens=3,
        ),
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        time_to_first_token_ms=50.0,
        provider_ms=150.0,
        status=status,
        error_class="" if status == OK else "UpstreamError",
        finish_reason=finish_reason,
        attempts=1,
        replica_id="adapters-1",
        trace_id=f"{n:032x}",
    )
    obs.started_at.FromDatetime(started)
    obs.finished_at.FromDatetime(started + timedelta(milliseconds=latency_ms))
    if decision:
        obs.decision.CopyFrom(
            chat_pb2.Decision(
                decision_id=f"dec-{n}",
                route=route,
                policy="thompson",
                candidates=[chat_pb2.RankedCandidate(model=model, provider="local", score=0.7)],
                propensity=0.75,
                explanation="best posterior draw",
                policy_version=3,
                features=chat_pb2.RequestFeatures(estimated_prompt_tokens=10, vector=[1.0, 0.5, 0.25]),
            )
        )
    return obs


def batch(*observations: observer_pb2.Observation) -> observer_pb2.IngestRequest:
    """An Ingest batch of these observations."""
    return observer_pb2.IngestRequest(observations=observations)


def feedback(obs: observer_pb2.Observation, score: float, tenant: str | None = None):
    return observer_pb2.RecordFeedbackRequest(
        decision_id=obs.decision.decision_id,
        tenant=obs.tenant if tenant is None else tenant,
        score=score,
        label="thumbs",
        source="test",
    )


async def all_rewards(store: Store) -> list[observer_pb2.RewardEvent]:
    return await store.rewards_after(0, 10_000)


def sqlite_stores(tmp_path: Path) -> Callable[..., Store]:
    """Unopened SQLite stores, all on one file under tmp_path."""
    path = tmp_path / "observer.sqlite3"
    return lambda **kw: SqliteStore(path, reward_model=REWARDS, **kw)


def postgres_stores(dsn: str) -> Callable[..., Store]:
    """Unopened PostgreSQL stores, all on the database of `dsn`."""
    return lambda **kw: PostgresStore(dsn, 1, 4, reward_model=REWARDS, **kw)
