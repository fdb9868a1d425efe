"""An observation's summary (IngestRequest.summaries): the fields the observer stores as columns, flattened."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from atp.observer.v1 import observer_pb2

# struct packers by vector length (a vector has the kernel's few dimensions; one is packed per request).
_PACKERS: dict[int, struct.Struct] = {}


def pack_features(vector: Sequence[float]) -> bytes:
    """A feature vector as little-endian float32 bytes (ObservationSummary.features_f32le)."""
    size = len(vector)
    packer = _PACKERS.get(size)
    if packer is None:
        packer = _PACKERS.setdefault(size, struct.Struct(f"<{size}f"))
    # A slice copies a protobuf repeated field into a list in one C call, cheaper than unpacking the
    # field itself element by element.
    return packer.pack(*vector[:])


def summary_of(observation: observer_pb2.Observation) -> observer_pb2.ObservationSummary:
    """The summary of an observation: what its producer sends beside it, and what the observer derives
    when a producer sends none. Each field is the observation's field of the same name."""
    decision = observation.decision
    vector = decision.features.vector
    usage = observation.usage
    started = observation.started_at
    return observer_pb2.ObservationSummary(
        observation_id=observation.observation_id,
        decision_id=decision.decision_id,
        tenant=observation.tenant,
        route=decision.route,
        model=observation.model,
        policy=decision.policy,
        propensity=decision.propensity,
        features_f32le=pack_features(vector) if vector else b"",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=observation.cost_usd,
        latency_ms=observation.latency_ms,
        status=observation.status,
        finish_reason=observation.finish_reason,
        started_at_unix_micros=started.seconds * 1_000_000 + started.nanos // 1000,
        key_id=observation.key_id,
        end_user=observation.end_user,
        deployment=observation.deployment,
        tags=observation.tags,
    )
