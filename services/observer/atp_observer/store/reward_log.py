"""PostgreSQL's reward log: one row per transaction that appends rewards, ordered by transaction id."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from atp.observer.v1 import observer_pb2
from atp_observer.store.layout import OBSERVATION_COLUMNS, unpack_vector
from atp_observer.store.pg_session import PG_EPOCH_MICROS
from atp_observer.store.reward_rows import arm_stats_row, reward_event

# An event's cursor is the id of the transaction that appended it, shifted left by CURSOR_POSITION_BITS,
# plus its position among that transaction's events; a transaction appends fewer than 2^20 events (the
# ingest settings cap a transaction below that).
CURSOR_POSITION_BITS = 20
POSITION_MASK = (1 << CURSOR_POSITION_BITS) - 1

# An observations row as ingest stores it: the columns, then the decision's reward and quality (None when
# it earns none).
STORED_COLUMNS = (*OBSERVATION_COLUMNS, "reward", "quality")
REWARD, QUALITY = len(OBSERVATION_COLUMNS), len(OBSERVATION_COLUMNS) + 1

# The orphan feedback (feedback that came before its observation) of the given decisions, oldest first.
# Read under the shared reward lock (see PostgresStore). The decision ids travel as one string split by
# ID_SEPARATOR, which asyncpg encodes in one step where a text[] costs a type check per element (a
# decision id holding the separator could only miss its own orphan feedback).
ORPHANS_SQL = (
    "SELECT seq, decision_id, tenant, score FROM feedback "
    "WHERE orphan AND decision_id = ANY(string_to_array($1, chr(31))) "
    # Evaluated once, first: with no orphan feedback at all (the usual case) nothing is looked up.
    "AND EXISTS (SELECT 1 FROM feedback WHERE orphan) ORDER BY seq"
)
ID_SEPARATOR = "\x1f"
# One ingest transaction's events as one row; the orphan feedback they joined stops being orphan.
APPEND_INGEST_SQL = """
    WITH joined AS (UPDATE feedback SET orphan = false WHERE orphan AND seq = ANY($4::bigint[]))
    INSERT INTO reward_log (xid, event_count, events, at) VALUES (pg_current_xact_id(), $1, $2, $3)"""
# One feedback's correction as one row.
APPEND_CORRECTION_SQL = """
    INSERT INTO reward_log (xid, event_count, events, corrections, previous_rewards, previous_qualities, at)
    VALUES (pg_current_xact_id(), 1, $1, ARRAY[true], ARRAY[$2::float8], ARRAY[$3::float8], $4)"""
# A row as log_events reads it.
ROW = (
    "xid::text::bigint, event_count, events, positions, corrections, previous_rewards, previous_qualities, at"
)
# Rows of transactions below the horizon, from a transaction id on: every transaction with a smaller id
# than the horizon has ended, so no row can still appear before the last one returned.
READ_SQL = (
    f"SELECT {ROW} FROM reward_log "
    "WHERE xid >= $1::text::xid8 AND xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid LIMIT $2"
)
# Rows read per round trip while paging through the stream.
PAGE_ROWS = 16

# What a row's `events` holds of each event, by position in a stored row; then the features, hex-encoded.
_PACKED_POSITIONS = (
    *(OBSERVATION_COLUMNS.index(c) for c in ("decision_id", "tenant", "route", "model", "policy")),
    REWARD,
    QUALITY,
    *(OBSERVATION_COLUMNS.index(c) for c in ("cost_usd", "latency_ms", "propensity")),
)
_FEATURES = OBSERVATION_COLUMNS.index("features")


def pack_events(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """The `events` of a row: JSON, one array per field, each element an event of these stored rows.
    (Parallel arrays in one value cost asyncpg and PostgreSQL far less than eleven array parameters,
    whose encoding checks every element.)"""
    columns = list(zip(*rows, strict=True))  # transposed in C: cheaper than picking fields row by row
    packed: list[Any] = [columns[i] for i in _PACKED_POSITIONS]
    packed.append(list(map(bytes.hex, columns[_FEATURES])))
    return orjson.dumps(packed)


def pack_correction(values: Sequence[Any]) -> bytes:
    """The `events` of a correction's row: decision_id, tenant, route, model, policy, reward, quality,
    cost, latency, propensity and packed features, each as a one-element array."""
    *fields, features = values
    return orjson.dumps([*([value] for value in fields), [features.hex()]])


def _number(value: float | str | None) -> float:
    """A float read back from JSON: orjson writes NaN and infinities as null, PostgreSQL as strings."""
    return math.nan if value is None else float(value)


def log_events(
    row: Sequence[Any], *, after: int, limit: int, epoch_micros: int
) -> list[observer_pb2.RewardEvent]:
    """The events of one row (as ROW selects it, its `at` in microseconds after `epoch_micros`) with a
    cursor above `after`, at most `limit`."""
    xid, count, packed, positions, corrections, previous_rewards, previous_qualities, at = row
    base = xid << CURSOR_POSITION_BITS
    fields = orjson.loads(packed)
    decision_ids, tenants, routes, models, policies = fields[:5]
    rewards, qualities, costs, latencies, propensities = (
        list(map(_number, column)) for column in fields[5:10]
    )
    features = fields[10]
    at_micros = at + epoch_micros
    events = []
    for i in range(count):
        cursor = base | (i if positions is None else positions[i])
        if cursor <= after:
            continue
        correction = corrections is not None and corrections[i]
        values = (
            cursor,
            decision_ids[i],
            tenants[i],
            routes[i],
            models[i],
            policies[i],
            rewards[i],
            qualities[i],
            costs[i],
            latencies[i],
            propensities[i],
            None,
            correction,
            previous_rewards[i] if correction else 0.0,
            previous_qualities[i] if correction else 0.0,
        )
        events.append(reward_event(values, unpack_vector(bytes.fromhex(features[i])), at_micros))
        if len(events) >= limit:
            break
    return events


def take_back(sums: dict[tuple[str, str, str], list[float]], event: observer_pb2.RewardEvent) -> None:
    """Undo one event in per-arm sums (pulls, reward, reward^2, quality, cost, latency), for the arm and
    for the arm and tenant."""
    for key in ((event.route, event.model, ""), (event.route, event.model, event.tenant)):
        values = sums.get(key)
        if values is None:
            continue
        if event.correction:
            values[1] -= event.reward - event.previous_reward
            values[2] -= event.reward**2 - event.previous_reward**2
            values[3] -= event.quality - event.previous_quality
        else:
            values[0] -= 1
            values[1] -= event.reward
            values[2] -= event.reward**2
            values[3] -= event.quality
            values[4] -= event.cost_usd
            values[5] -= event.latency_ms


async def read_arm_stats(conn: asyncpg.Connection, route: str) -> tuple[list[observer_pb2.ArmStats], int]:
    """Per-arm sums of each decision's current reward (a correction replaces the original) over the
    observations of `route` (empty: all), as of the cursor returned: a watcher resuming from it neither
    misses an event nor counts one twice."""
    where = "reward IS NOT NULL" + (" AND route = $1" if route else "")
    sql = f"""
        SELECT route, model, CASE WHEN GROUPING(tenant) = 1 THEN '' ELSE tenant END,
               count(*)::float8, sum(reward), sum(reward * reward), sum(quality), sum(cost_usd),
               sum(latency_ms)
        FROM observations WHERE {where}
        GROUP BY GROUPING SETS ((route, model), (route, model, tenant))
        HAVING GROUPING(tenant) = 1 OR tenant <> ''
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for all four reads. The sums include every transaction it sees; the stream
        # (and so the cursor returned) only those below its horizon. The few seen above the horizon
        # are taken back out of the sums, newest first.
        horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        last = await conn.fetchrow(
            "SELECT xid::text::bigint, positions[event_count], event_count "
            "FROM reward_log WHERE xid < $1::text::xid8 ORDER BY xid DESC LIMIT 1",
            str(horizon),
        )
        above = await conn.fetch(
            f"SELECT {ROW} FROM reward_log WHERE xid >= $1::text::xid8 ORDER BY xid DESC",
            str(horizon),
        )
        rows = await (conn.fetch(sql, route) if route else conn.fetch(sql))
    sums = {(row[0], row[1], row[2]): list(row[3:]) for row in rows}
    for log_row in above:
        for event in reversed(
            log_events(log_row, after=-1, limit=POSITION_MASK + 1, epoch_micros=PG_EPOCH_MICROS)
        ):
            if not route or event.route == route:
                take_back(sums, event)
    bound = 0
    if last is not None:
        xid, position, count = last
        bound = (xid << CURSOR_POSITION_BITS) | (count - 1 if position is None else position)
    arms = [arm_stats_row((*key, *values)) for key, values in sorted(sums.items()) if values[0] > 0]
    return arms, bound
