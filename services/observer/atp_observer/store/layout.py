"""The observations table's row layout: its columns, an Observation as a row and a row as an Observation."""

from __future__ import annotations

import operator
import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_common.observation_rows import ROW_FIELDS, pack_vector

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

# Columns of `observations` that ingest writes, in the order every row tuple uses: what queries filter,
# group and sum, and what rewards are computed from (the fields of a producer's row), then the rest of the
# observation as its own serialized bytes, `payload`: one C call per row where reading and encoding sixteen
# more fields cost about half the observer's CPU per observation (docs/design-notes.md, "Observation rows").
OBSERVATION_COLUMNS: tuple[str, ...] = (*ROW_FIELDS, "key_id", "end_user", "deployment", "tags", "payload")
(
    OBS_ID,
    OBS_DECISION_ID,
    OBS_TENANT,
    OBS_ROUTE,
    OBS_MODEL,
    OBS_POLICY,
    OBS_PROPENSITY,
    OBS_FEATURES,
    OBS_PROMPT_TOKENS,
    OBS_COMPLETION_TOKENS,
    OBS_COST,
    OBS_LATENCY,
    OBS_STATUS,
    OBS_FINISH_REASON,
    OBS_STARTED,
    OBS_KEY_ID,
    OBS_END_USER,
    OBS_DEPLOYMENT,
    OBS_TAGS,
    OBS_PAYLOAD,
) = range(len(OBSERVATION_COLUMNS))

# Rows stored before the payload existed (schema 3 in PostgreSQL, 2 in SQLite) hold every field in a column
# and no payload; they are read back from these columns until retention removes them.
LEGACY_COLUMNS: tuple[str, ...] = (
    "observation_id",
    "request_id",
    "decision_id",
    "tenant",
    "route",
    "model",
    "provider",
    "policy",
    "propensity",
    "features",
    "prompt_hash",
    "prompt_text",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "provider_ms",
    "status",
    "error_class",
    "finish_reason",
    "attempts",
    "started_at",
    "finished_at",
    "replica_id",
    "decision",
    "trace_id",
    "cache_write_tokens",
)
# What readers select to rebuild an Observation from a row of either format (see observation_from_row).
READ_COLUMNS: tuple[str, ...] = ("payload", *LEGACY_COLUMNS)
LEGACY_STARTED, LEGACY_FINISHED = 25, 26

_LITTLE_ENDIAN = sys.byteorder == "little"
_EMPTY_VECTOR = b""
_ROW_LENGTH = len(ROW_FIELDS)


def micros_to_datetime(micros: int) -> datetime:
    """UTC datetime of a count of microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=micros)


def datetime_to_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware (or UTC-naive) datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MICROSECOND


def now_micros() -> int:
    """The current time in microseconds since the epoch."""
    return datetime_to_micros(datetime.now(UTC))


def unpack_vector(blob: bytes) -> list[float]:
    """The inverse of pack_vector."""
    packed = array("f")
    packed.frombytes(blob)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tolist()


# The fields observation_values reads, each group in one C-level call: upb attribute access dominates the
# cost of a row, and attrgetter saves the interpreter's per-attribute overhead around it.
_OBSERVATION_FIELDS = operator.attrgetter(
    "observation_id", "tenant", "model", "cost_usd", "latency_ms", "status", "finish_reason"
)
_ATTRIBUTION_FIELDS = operator.attrgetter("key_id", "end_user", "deployment", "tags")


def _attribution(obs: observer_pb2.Observation) -> tuple[str, str, str, str | None]:
    """The key, end user, deployment and tags (a JSON object, None without tags) of an observation."""
    key_id, end_user, deployment, tags = _ATTRIBUTION_FIELDS(obs)
    return key_id, end_user, deployment, orjson.dumps(dict(tags)).decode() if tags else None


_DECISION_FIELDS = operator.attrgetter("decision_id", "route", "policy", "propensity")
_NO_DECISION = ("", "", "", 0.0)


def observation_values(obs: observer_pb2.Observation, epoch_micros: int = 0) -> tuple[Any, ...]:
    """One `observations` row in OBSERVATION_COLUMNS order: started_at as integer microseconds since the
    backend's epoch (`epoch_micros` after the Unix epoch), the feature vector packed as float32 bytes, and
    the whole observation serialized as the payload.

    This runs once per ingested observation, so it reads each field once and converts the timestamp from
    seconds and nanos with integer arithmetic (Timestamp.ToMicroseconds is pure Python and several times
    slower, and a datetime costs more to build and to encode than the integer the backends store)."""
    o = _OBSERVATION_FIELDS(obs)
    if not o[0]:
        raise InvalidArgument("observation without observation_id", param="observation_id")
    has_field = obs.HasField
    if not has_field("started_at"):
        raise InvalidArgument(f"observation {o[0]} has no started_at", param="started_at")
    if has_field("decision"):
        decision = obs.decision
        d = _DECISION_FIELDS(decision)
        vector = decision.features.vector
        features = pack_vector(vector) if vector else _EMPTY_VECTOR
    else:
        d, features = _NO_DECISION, _EMPTY_VECTOR
    usage = obs.usage
    started = obs.started_at
    a = _attribution(obs)
    # Indexing, not unpacking: a starred item makes the tuple a list first.
    return (
        o[0],
        d[0],
        o[1],
        d[1],
        o[2],
        d[2],
        d[3],
        features,
        usage.prompt_tokens,
        usage.completion_tokens,
        o[3],
        o[4],
        o[5],
        o[6],
        started.seconds * 1_000_000 + started.nanos // 1000 - epoch_micros,
        a[0],
        a[1],
        a[2],
        a[3],
        obs.SerializeToString(),
    )


def batch_values(
    batch: observer_pb2.IngestRequest, epoch_micros: int = 0, *, producer_rows: bool = True
) -> list[tuple[Any, ...]]:
    """The `observations` rows of one Ingest batch: decoded from the producer's rows when it sent one per
    observation that fits, else read from each observation (observation_values). Decoding a batch of
    rows is one C call, where reading the fields costs several microseconds per observation."""
    observations = batch.observations
    if producer_rows:
        rows = batch.rows
        if rows and len(rows) == len(observations):
            values = _decoded(rows, observations, epoch_micros)
            if values is not None:
                return values
    return [observation_values(obs, epoch_micros) for obs in observations]


def _decoded(
    rows: Sequence[bytes], observations: Sequence[observer_pb2.Observation], epoch_micros: int
) -> list[tuple[Any, ...]] | None:
    """Producer rows as stored rows, or None when they do not fit (the caller reads the observations,
    which also refuses an observation without its id or start)."""
    try:
        decoded = orjson.loads(b"[" + b",".join(rows) + b"]")
        if not all(len(r) == _ROW_LENGTH and r[0] and r[14] for r in decoded):
            return None
        return [
            (
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                bytes.fromhex(r[7]),
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                r[14] - epoch_micros,
                *_attribution(obs),
                obs.SerializeToString(),
            )
            for r, obs in zip(decoded, observations, strict=True)
        ]
    except (ValueError, TypeError, IndexError):
        # Not JSON, not arrays, a non-hex vector or a count that differs: not rows this observer reads.
        return None


def observation_from_row(row: Sequence[Any], epoch_micros: int = 0) -> observer_pb2.Observation:
    """The Observation of a row selected as READ_COLUMNS: its payload, or for a row stored before the
    payload existed, its columns (timestamps in microseconds after `epoch_micros`)."""
    if row[0] is not None:
        stored: observer_pb2.Observation = observer_pb2.Observation.FromString(row[0])
        return stored
    legacy = row[1:]
    obs = observer_pb2.Observation(
        observation_id=legacy[0],
        request_id=legacy[1],
        tenant=legacy[3],
        model=legacy[5],
        provider=legacy[6],
        prompt_hash=legacy[10],
        prompt_text=legacy[11],
        usage=chat_pb2.Usage(
            prompt_tokens=legacy[12],
            completion_tokens=legacy[13],
            cached_prompt_tokens=legacy[14],
            reasoning_tokens=legacy[15],
            estimated=bool(legacy[16]),
            cache_write_tokens=legacy[30],
        ),
        cost_usd=legacy[17],
        latency_ms=legacy[18],
        time_to_first_token_ms=legacy[19],
        provider_ms=legacy[20],
        status=legacy[21],
        error_class=legacy[22],
        finish_reason=legacy[23],
        attempts=legacy[24],
        replica_id=legacy[27],
        trace_id=legacy[29],
    )
    obs.started_at.FromMicroseconds(legacy[LEGACY_STARTED] + epoch_micros)
    if legacy[LEGACY_FINISHED] is not None:
        obs.finished_at.FromMicroseconds(legacy[LEGACY_FINISHED] + epoch_micros)
    if legacy[28] is not None:
        obs.decision.ParseFromString(legacy[28])
    return obs


# What get_decision selects: the latest observation of a decision, in either row format.
DECISION_SQL = (
    "SELECT payload, decision, tenant, replica_id, started_at FROM observations "
    "WHERE decision_id = {param} AND (payload IS NOT NULL OR decision IS NOT NULL) "
    "ORDER BY started_at DESC LIMIT 1"
)


def decision_response(row: Sequence[Any], epoch_micros: int = 0) -> observer_pb2.GetDecisionResponse:
    """GetDecisionResponse from a DECISION_SQL row (started_at in microseconds after `epoch_micros`)."""
    payload, decision, tenant, replica_id, started_at = row
    response = observer_pb2.GetDecisionResponse(tenant=tenant)
    if payload is not None:
        obs = observer_pb2.Observation.FromString(payload)
        response.decision.CopyFrom(obs.decision)
        response.replica_id = obs.replica_id
    else:
        response.decision.ParseFromString(decision)
        response.replica_id = replica_id
    response.decided_at.FromMicroseconds(started_at + epoch_micros)
    return response


def count_stored(
    batches: Sequence[Sequence[tuple[Any, ...]]], fresh: Iterable[tuple[Any, ...]]
) -> list[tuple[int, int]]:
    """(stored, duplicates) per batch of rows, given the row objects that were stored."""
    stored_ids = {id(row) for row in fresh}
    result = []
    for rows in batches:
        stored = sum(1 for row in rows if id(row) in stored_ids)
        result.append((stored, len(rows) - stored))
    return result
