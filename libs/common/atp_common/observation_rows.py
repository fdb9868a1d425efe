"""An observation's stored column values, as its producer encodes them beside it (IngestRequest.rows)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2

# What one row holds, in order: the observer's columns up to the payload. `features` is the decision's
# vector packed as little-endian float32, hex-encoded; `started_at` is in Unix microseconds.
ROW_FIELDS: tuple[str, ...] = (
    "observation_id",
    "decision_id",
    "tenant",
    "route",
    "model",
    "policy",
    "propensity",
    "features",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "status",
    "finish_reason",
    "started_at",
)

# struct packers by vector length (a vector has the kernel's few dimensions; one is packed per request).
_PACKERS: dict[int, struct.Struct] = {}


def pack_vector(vector: Sequence[float]) -> bytes:
    """A feature vector as little-endian float32 bytes (how the observer stores it)."""
    size = len(vector)
    packer = _PACKERS.get(size)
    if packer is None:
        packer = _PACKERS.setdefault(size, struct.Struct(f"<{size}f"))
    # A slice copies a protobuf repeated field into a list in one C call, cheaper than unpacking the
    # field itself element by element.
    return packer.pack(*vector[:])


def encode_row(
    *,
    observation_id: str,
    decision: chat_pb2.Decision,
    tenant: str,
    model: str,
    usage: chat_pb2.Usage,
    cost_usd: float,
    latency_ms: float,
    status: int,
    finish_reason: str,
    started_micros: int,
) -> bytes:
    """The row of an observation built from these values (which the producer holds anyway), as JSON."""
    vector = decision.features.vector
    return orjson.dumps(
        [
            observation_id,
            decision.decision_id,
            tenant,
            decision.route,
            model,
            decision.policy,
            decision.propensity,
            pack_vector(vector).hex() if vector else "",
            usage.prompt_tokens,
            usage.completion_tokens,
            cost_usd,
            latency_ms,
            status,
            finish_reason,
            started_micros,
        ]
    )


def row_of(observation: observer_pb2.Observation) -> bytes:
    """The row of an Observation already built (for callers that hold only the proto)."""
    started = observation.started_at
    return encode_row(
        observation_id=observation.observation_id,
        decision=observation.decision,
        tenant=observation.tenant,
        model=observation.model,
        usage=observation.usage,
        cost_usd=observation.cost_usd,
        latency_ms=observation.latency_ms,
        status=observation.status,
        finish_reason=observation.finish_reason,
        started_micros=started.seconds * 1_000_000 + started.nanos // 1000,
    )
