"""PostgreSQL's ingest transaction: new observations with their rewards, and those rewards as one log row."""

from __future__ import annotations

from typing import Any

import asyncpg

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.store import reward_log
from atp_observer.store.layout import (
    OBS_COST,
    OBS_DECISION_ID,
    OBS_FINISH_REASON,
    OBS_LATENCY,
    OBS_ROUTE,
    OBS_STARTED,
    OBS_STATUS,
    OBS_TENANT,
    now_micros,
)
from atp_observer.store.pg_session import PG_EPOCH_MICROS
from atp_observer.store.reward_log import STORED_COLUMNS
from atp_observer.store.rewards import RewardModel

_STORED_COLS = ", ".join(STORED_COLUMNS)
_INSERT_FROM_STAGE = (
    f"INSERT INTO observations ({_STORED_COLS}) SELECT {_STORED_COLS} FROM obs_stage "
    "ON CONFLICT DO NOTHING RETURNING observation_id, started_at"
)
_CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED
_NO_REWARD = (None, None)


async def insert_batch(
    conn: asyncpg.Connection,
    rows: list[tuple[Any, ...]],
    *,
    begin: str,
    reward_model: RewardModel,
    deduplicate: bool,
) -> list[tuple[Any, ...]]:
    """One transaction: the new rows with their rewards, and those rewards as one reward_log row.
    Returns the rows that were new. `begin` opens the transaction and takes the shared reward lock
    (see PostgresStore).

    Five round trips whatever the batch size: begin with the shared reward lock; the orphan feedback
    of these decisions; the rows; the log row; commit. The transaction is driven by hand (not
    conn.transaction()) so that beginning and locking share a round trip. The transaction id, which
    orders the log row, is drawn by the first write, so under the lock."""
    await conn.execute(begin)
    try:
        scores, orphan_seqs = await _orphan_feedback(conn, rows)
        stored = with_rewards(reward_model, rows, scores)
        fresh = await _insert_rows(conn, stored, deduplicate)
        await _append_rewards(conn, fresh, orphan_seqs)
        await conn.execute("COMMIT")
    except BaseException:
        await _roll_back(conn)
        raise
    if fresh is stored:
        return rows
    originals = {id(row): original for row, original in zip(stored, rows, strict=True)}
    return [originals[id(row)] for row in fresh]


async def _orphan_feedback(
    conn: asyncpg.Connection, rows: list[tuple[Any, ...]]
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], list[int]]]:
    """Feedback that arrived before these rows' observations: the latest score per (decision, tenant),
    and the log positions of every such feedback, which the rewards appended for them join."""
    decisions = reward_log.ID_SEPARATOR.join({row[OBS_DECISION_ID] for row in rows} - {""})
    scores: dict[tuple[str, str], float] = {}
    orphan_seqs: dict[tuple[str, str], list[int]] = {}
    for seq, decision_id, tenant, score in (
        await conn.fetch(reward_log.ORPHANS_SQL, decisions) if decisions else ()
    ):
        scores[(decision_id, tenant)] = score  # the latest feedback wins
        orphan_seqs.setdefault((decision_id, tenant), []).append(seq)
    return scores, orphan_seqs


async def _append_rewards(
    conn: asyncpg.Connection, fresh: list[tuple[Any, ...]], orphan_seqs: dict[tuple[str, str], list[int]]
) -> None:
    """The rewards of the new rows as one reward_log row, joining the orphan feedback they consume."""
    rewarded = [row for row in fresh if row[reward_log.REWARD] is not None]
    if not rewarded:
        return
    if len(rewarded) > reward_log.POSITION_MASK:
        raise InvalidArgument(f"{len(rewarded)} reward events in one transaction is too many")
    joined = (
        [
            seq
            for key in {(row[OBS_DECISION_ID], row[OBS_TENANT]) for row in rewarded}
            for seq in orphan_seqs.get(key, ())
        ]
        if orphan_seqs
        else []
    )
    await conn.execute(
        reward_log.APPEND_INGEST_SQL,
        len(rewarded),
        reward_log.pack_events(rewarded),
        now_micros() - PG_EPOCH_MICROS,
        joined,
    )


async def _roll_back(conn: asyncpg.Connection) -> None:
    """End the failed transaction, or drop the connection when the server went away."""
    if conn.is_closed() or not conn.is_in_transaction():
        return
    try:
        await conn.execute("ROLLBACK")
    except Exception:
        # The server went away mid-transaction: drop the connection, so the pool opens a new one instead
        # of trying (and loudly failing) to reset this one.
        conn.terminate()


def with_rewards(
    model: RewardModel, rows: list[tuple[Any, ...]], scores: dict[tuple[str, str], float]
) -> list[tuple[Any, ...]]:
    """The rows to store: each observation with its decision's reward and quality (None, None when it
    earns none, see eligible_for_reward). Quality is the latest orphan feedback's score, else the
    outcome's proxy. Runs per observation, hence the locals."""
    # A batch has few routes and outcomes: their penalties and proxy qualities are looked up once.
    penalties: dict[str, tuple[float, float]] = {}
    proxies: dict[tuple[int, str], float] = {}
    stored: list[tuple[Any, ...]] = []
    append = stored.append
    for row in rows:
        route, status = row[OBS_ROUTE], row[OBS_STATUS]
        if not route or not row[OBS_DECISION_ID] or status == _CANCELLED:
            append(row + _NO_REWARD)
            continue
        quality = scores.get((row[OBS_DECISION_ID], row[OBS_TENANT])) if scores else None
        if quality is None:
            outcome = (status, row[OBS_FINISH_REASON])
            quality = proxies.get(outcome)
            if quality is None:
                quality = proxies[outcome] = model.proxy_quality(*outcome) or 0.0
        per_usd, per_ms = penalties.get(route) or penalties.setdefault(route, model.penalties(route))
        append((*row, quality - per_usd * row[OBS_COST] - per_ms * row[OBS_LATENCY], quality))
    return stored


async def _insert_rows(
    conn: asyncpg.Connection, rows: list[tuple[Any, ...]], deduplicate: bool
) -> list[tuple[Any, ...]]:
    """Insert the rows not stored yet (inside the open transaction) and return them."""
    # Fast path: a batch is almost always new, so COPY it straight in. A resent batch (the adapters
    # retry when an ack is lost) hits the primary key, which aborts the transaction; the caller begins
    # again and deduplicates. This costs a resend a failed COPY and saves every new batch a second
    # pass over its rows.
    if not deduplicate:
        await conn.copy_records_to_table("observations", records=rows, columns=STORED_COLUMNS)
        return rows
    await conn.copy_records_to_table("obs_stage", records=rows, columns=STORED_COLUMNS)
    inserted = await conn.fetch(_INSERT_FROM_STAGE)
    by_key: dict[tuple[str, int], tuple[Any, ...]] = {}
    for row in rows:
        by_key.setdefault((row[0], row[OBS_STARTED]), row)
    return [by_key[(key[0], key[1])] for key in inserted]
