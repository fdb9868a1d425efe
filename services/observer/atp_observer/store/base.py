"""The store interface both backends implement, with the row layout and reward logic they share."""

from __future__ import annotations

import abc
import math
import operator
import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_common.observation_rows import ROW_FIELDS, pack_vector
from atp_observer.store.console import ObservationFilters
from atp_observer.store.rewards import RewardModel

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

# Columns of `observations` that ingest writes, in the order every row tuple uses: what queries filter,
# group and sum, and what rewards are computed from (the fields of a producer's row), then the rest of the
# observation as its own serialized bytes, `payload`: one C call per row where reading and encoding sixteen
# more fields cost about half the observer's CPU per observation (docs/design-notes.md, "Observation rows").
OBSERVATION_COLUMNS: tuple[str, ...] = (*ROW_FIELDS, "payload")
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

GROUP_COLUMNS = ("tenant", "route", "model")
MAX_LIST_LIMIT = 1000
MAX_REWARDS_LIMIT = 10_000

_LITTLE_ENDIAN = sys.byteorder == "little"
_EMPTY_VECTOR = b""
_ROW_LENGTH = len(ROW_FIELDS)

_OK = observer_pb2.ObservationStatus.OBSERVATION_STATUS_OK
_CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED


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
_DECISION_FIELDS = operator.attrgetter("decision_id", "route", "policy", "propensity")
_NO_DECISION = ("", "", "", 0.0)


def observation_values(obs: observer_pb2.Observation, epoch_micros: int = 0) -> tuple[Any, ...]:
    """One `observations` row in OBSERVATION_COLUMNS order: started_at as integer microseconds since the
    backend's epoch (`epoch_micros` after the Unix epoch), the feature vector packed as float32 bytes, and
    the whole observation serialized as the payload.

    This runs once per ingested observation, so it reads each field once and converts the timestamp from
    seconds and nanos with integer arithmetic (Timestamp.ToMicroseconds is pure Python and slower, and a
    datetime costs more to build and to encode than the integer the backends store)."""
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
        return observer_pb2.Observation.FromString(row[0])
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


def check_feedback(req: observer_pb2.RecordFeedbackRequest) -> None:
    """Refuse feedback that can never be valid."""
    if not req.decision_id:
        raise InvalidArgument("feedback needs a decision_id", param="decision_id")
    if not (0.0 <= req.score <= 1.0) or math.isnan(req.score):
        raise InvalidArgument(f"score {req.score} is outside 0..1", param="score")


def check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    """The grouping columns in canonical order; unknown names are refused."""
    wanted = set(group_by)
    unknown = wanted.difference(GROUP_COLUMNS)
    if unknown:
        raise InvalidArgument(f"cannot group usage by {sorted(unknown)}", param="group_by")
    return tuple(column for column in GROUP_COLUMNS if column in wanted)


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


def check_page(before: datetime | None, before_observation_id: str) -> None:
    """Refuse a page key without its timestamp: the keyset is (started_at, observation_id)."""
    if before_observation_id and before is None:
        raise InvalidArgument("before_observation_id needs before", param="before_observation_id")


def check_limit(limit: int, maximum: int) -> int:
    """A positive limit, capped so a single answer stays bounded."""
    if limit <= 0:
        raise InvalidArgument(f"limit must be positive, got {limit}", param="limit")
    return min(limit, maximum)


def usage_query(
    aggregates: Sequence[str], groups: Sequence[str], where: Sequence[str], bucket: str = ""
) -> str:
    """The usage query: `aggregates` per group over the observations matching `where`, groups in order,
    first by the time bucket that the SQL expression `bucket` computes (in Unix seconds) when given.
    Each backend supplies its own dialect for the aggregates and placeholders; the shape is shared."""
    keys = [f"{bucket} AS bucket", *groups] if bucket else list(groups)
    names = ["bucket", *groups] if bucket else list(groups)
    sql = f"SELECT {', '.join([*keys, *aggregates])} FROM observations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if names:
        sql += f" GROUP BY {', '.join(names)}"
    sql += " HAVING count(*) > 0"
    if names:
        sql += f" ORDER BY {', '.join(names)}"
    return sql


def usage_row(groups: tuple[str, ...], row: Sequence[Any]) -> observer_pb2.UsageRow:
    """A UsageRow from `*groups, requests, errors, prompt, completion, cost, mean latency`; a group named
    `bucket` holds the start of the row's time bucket in Unix seconds."""
    labels = dict(zip(groups, row, strict=False))
    n = len(groups)
    usage = observer_pb2.UsageRow(
        tenant=labels.get("tenant", ""),
        route=labels.get("route", ""),
        model=labels.get("model", ""),
        requests=row[n],
        errors=row[n + 1],
        prompt_tokens=row[n + 2],
        completion_tokens=row[n + 3],
        cost_usd=row[n + 4],
        mean_latency_ms=row[n + 5],
    )
    if "bucket" in labels:
        usage.bucket_start.FromSeconds(int(labels["bucket"]))
    return usage


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
        """Usage and cost over [start, end) grouped by any of tenant/route/model, and by time buckets of
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
