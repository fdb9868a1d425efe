"""The observations table's row layout: its columns, an Observation as a row and a row as an Observation."""

from __future__ import annotations

import logging
import operator
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument

log = logging.getLogger("atp.observer.store")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

# Columns of `observations` that ingest writes, in the order every row tuple uses: what queries filter,
# group and sum, and what rewards are computed from, then the rest of the observation as its own serialized
# bytes, `payload`: one C call per row where reading and encoding sixteen more fields cost about half the
# observer's CPU per observation (docs/design-notes.md, "Observation rows").
OBSERVATION_COLUMNS: tuple[str, ...] = (
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
    "key_id",
    "end_user",
    "deployment",
    "tags",
    "payload",
)
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
# struct packers by vector length (a vector has the kernel's few dimensions; one is packed per row).
_PACKERS: dict[int, struct.Struct] = {}


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


def pack_vector(vector: Sequence[float]) -> bytes:
    """A feature vector as little-endian float32 bytes (how the `features` column stores it)."""
    size = len(vector)
    packer = _PACKERS.get(size)
    if packer is None:
        packer = _PACKERS.setdefault(size, struct.Struct(f"<{size}f"))
    # A slice copies a protobuf repeated field into a list in one C call, cheaper than unpacking the
    # field itself element by element.
    return packer.pack(*vector[:])


def unpack_vector(blob: bytes) -> list[float]:
    """The inverse of pack_vector."""
    packed = array("f")
    packed.frombytes(blob)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tolist()


# The fields observation_row reads, each group in one C-level call: upb attribute access dominates the
# cost of a row, and attrgetter saves the interpreter's per-attribute overhead around it.
_OBSERVATION_FIELDS = operator.attrgetter(
    "observation_id", "tenant", "model", "cost_usd", "latency_ms", "status", "finish_reason"
)
_ATTRIBUTION_FIELDS = operator.attrgetter("key_id", "end_user", "deployment", "tags")
_DECISION_FIELDS = operator.attrgetter("decision_id", "route", "policy", "propensity")
_NO_DECISION = ("", "", "", 0.0)
_INF = float("inf")


def observation_row(obs: observer_pb2.Observation, epoch_micros: int = 0) -> tuple[Any, ...]:
    """One `observations` row in OBSERVATION_COLUMNS order: started_at as integer microseconds since the
    backend's epoch (`epoch_micros` after the Unix epoch), the feature vector packed as float32 bytes, tags
    as a JSON object (None without tags), and the whole observation serialized as the payload. Refuses an
    observation without its id or start, or whose cost or latency is negative, infinite or NaN (a NaN is
    NULL to SQLite, and an infinite cost an infinite reward for the learner); negative token counts are
    stored as 0, since sums over them would understate usage.

    This runs once per ingested observation, so it reads each field once and converts the timestamp from
    seconds and nanos with integer arithmetic (Timestamp.ToMicroseconds is pure Python and several times
    slower, and a datetime costs more to build and to encode than the integer the backends store)."""
    o = _OBSERVATION_FIELDS(obs)
    if not o[0]:
        raise InvalidArgument("observation without observation_id", param="observation_id")
    has_field = obs.HasField
    if not has_field("started_at"):
        raise InvalidArgument(f"observation {o[0]} has no started_at", param="started_at")
    # Chained comparisons, not math.isfinite: NaN fails both, and this runs per observation.
    if not (0.0 <= o[3] < _INF and 0.0 <= o[4] < _INF):
        raise InvalidArgument(f"observation {o[0]} has cost {o[3]} and latency {o[4]}", param="cost_usd")
    if has_field("decision"):
        decision = obs.decision
        d = _DECISION_FIELDS(decision)
        vector = decision.features.vector
        features = pack_vector(vector) if vector else _EMPTY_VECTOR
        if not -_INF < d[3] < _INF:
            raise InvalidArgument(f"observation {o[0]} has propensity {d[3]}", param="propensity")
    else:
        d, features = _NO_DECISION, _EMPTY_VECTOR
    usage = obs.usage
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    started = obs.started_at
    a = _ATTRIBUTION_FIELDS(obs)
    tags = a[3]
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
        prompt if prompt > 0 else 0,
        completion if completion > 0 else 0,
        o[3],
        o[4],
        o[5],
        o[6],
        started.seconds * 1_000_000 + started.nanos // 1000 - epoch_micros,
        a[0],
        a[1],
        a[2],
        orjson.dumps(dict(tags)).decode() if tags else None,
        obs.SerializeToString(),
    )


def batch_rows(batch: observer_pb2.IngestRequest, epoch_micros: int = 0) -> list[tuple[Any, ...]]:
    """The `observations` rows of one Ingest batch, without those observation_row refuses: each is logged
    and left out alone, since a refused batch would be spooled and sent again by its producer forever,
    holding back the good observations with it (the ingest counts them as `invalid`)."""
    try:
        # The common case in one comprehension; a batch with a refused observation is built again below.
        return [observation_row(obs, epoch_micros) for obs in batch.observations]
    except InvalidArgument:
        pass
    rows = []
    for obs in batch.observations:
        try:
            rows.append(observation_row(obs, epoch_micros))
        except InvalidArgument as exc:
            log.warning("observation not stored: %s", exc.message)
    return rows


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
