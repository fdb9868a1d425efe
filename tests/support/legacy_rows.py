"""Observation rows as the stores wrote them before the payload column: every field in its own column."""

from __future__ import annotations

from typing import Any

from atp.observer.v1 import observer_pb2
from atp_observer.store.layout import pack_vector


def micros(timestamp: Any) -> int:
    """A Timestamp as Unix microseconds."""
    return timestamp.seconds * 1_000_000 + timestamp.nanos // 1000


def legacy_values(obs: observer_pb2.Observation) -> tuple[Any, ...]:
    """The row in LEGACY_COLUMNS order, timestamps as Unix microseconds (written independently of the
    stores' code, so that a test of reading old rows does not share its assumptions)."""
    decision = obs.decision
    has_decision = obs.HasField("decision")
    usage = obs.usage
    return (
        obs.observation_id,
        obs.request_id,
        decision.decision_id,
        obs.tenant,
        decision.route,
        obs.model,
        obs.provider,
        decision.policy,
        decision.propensity,
        pack_vector(list(decision.features.vector)),
        obs.prompt_hash,
        obs.prompt_text,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_prompt_tokens,
        usage.reasoning_tokens,
        usage.estimated,
        obs.cost_usd,
        obs.latency_ms,
        obs.time_to_first_token_ms,
        obs.provider_ms,
        obs.status,
        obs.error_class,
        obs.finish_reason,
        obs.attempts,
        micros(obs.started_at),
        micros(obs.finished_at) if obs.HasField("finished_at") else None,
        obs.replica_id,
        decision.SerializeToString() if has_decision else None,
        obs.trace_id,
        usage.cache_write_tokens,
    )
