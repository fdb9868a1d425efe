"""The embedded backend: one SQLite file in WAL mode through aiosqlite, for a single observer replica."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument, PermissionDenied, Unavailable
from atp_observer.store import audit
from atp_observer.store.base import (
    MAX_LIST_LIMIT,
    MAX_REWARDS_LIMIT,
    Store,
    check_feedback,
    check_limit,
    check_page,
)
from atp_observer.store.console import (
    FEEDBACK_COLUMNS,
    MAX_FEEDBACK,
    ObservationFilters,
    check_bucket,
    feedback_record,
    filter_conditions,
)
from atp_observer.store.layout import (
    DECISION_SQL,
    OBS_DECISION_ID,
    OBS_STARTED,
    OBSERVATION_COLUMNS,
    READ_COLUMNS,
    batch_rows,
    count_stored,
    datetime_to_micros,
    decision_response,
    now_micros,
    observation_from_row,
    unpack_vector,
)
from atp_observer.store.migrations import SQLITE_MIGRATIONS, SQLITE_MIGRATIONS_TABLE
from atp_observer.store.reward_rows import (
    REWARD_COLUMNS,
    REWARD_FEATURES,
    arm_stats_row,
    eligible_for_reward,
    reward_event,
)
from atp_observer.store.rewards import RewardModel
from atp_observer.store.usage import (
    UsageDialect,
    check_group_by,
    usage_query,
    usage_row,
)

# Bound on bound parameters per statement, well under SQLite's limit.
_IN_CHUNK = 500

_OBS_COLS = ", ".join(OBSERVATION_COLUMNS)
_READ_COLS = ", ".join(READ_COLUMNS)
_REWARD_COLS = ", ".join(REWARD_COLUMNS)
_DECISION_SQL = DECISION_SQL.format(param="?")
_INSERT_STAGE = f"INSERT INTO obs_stage ({_OBS_COLS}) VALUES ({', '.join('?' * len(OBSERVATION_COLUMNS))})"
# `WHERE true` keeps SQLite's parser from reading ON CONFLICT as a join constraint.
_INSERT_FROM_STAGE = (
    f"INSERT INTO observations ({_OBS_COLS}) SELECT {_OBS_COLS} FROM obs_stage WHERE true "
    "ON CONFLICT DO NOTHING RETURNING observation_id, started_at"
)
_INSERT_REWARD = f"INSERT INTO reward_events ({_REWARD_COLS}) VALUES ({', '.join('?' * len(REWARD_COLUMNS))})"
_ERROR_STATUSES = ", ".join(
    str(status)
    for status in (
        observer_pb2.ObservationStatus.OBSERVATION_STATUS_ERROR,
        observer_pb2.ObservationStatus.OBSERVATION_STATUS_PARTIAL,
    )
)
# started_at is in microseconds; the bucket size is a checked integer, written into the statement.
_USAGE = UsageDialect(
    bucket="(started_at / {bucket_us}) * {bucket_s}",
    tag_join="LEFT JOIN json_each(observations.tags) AS tag",
    aggregates=(
        "count(*)",
        "sum(CASE WHEN status IN ({errors}) THEN 1 ELSE 0 END)",
        "total(prompt_tokens)",
        "total(completion_tokens)",
        "sum({cost})",
        "avg(latency_ms)",
    ),
    cost_nanos=(
        "CASE WHEN cost_usd >= 0 AND cost_usd <= {max_cost} THEN CAST(cost_usd * {nanos} + 0.5 AS INTEGER) END"
    ),
)


def _probe(path: Path) -> None:
    sqlite3.connect(path).close()


async def _fetchall(conn: aiosqlite.Connection, sql: str, params: Any = ()) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params))


class SqliteStore(Store):
    """Observations in one SQLite file (WAL). One connection; an asyncio lock serialises its use, so a
    transaction never interleaves with another task's statements and reward cursors follow commit order."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        reward_model: RewardModel,
        retention_days: int = 30,
        busy_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(reward_model=reward_model, retention_days=retention_days)
        self._path = Path(path)
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open (creating) the file, switch to WAL and apply pending migrations."""
        if self._conn is not None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # Probe with plain sqlite3 first: a failed aiosqlite.connect (0.22) leaves its worker thread
            # reporting to the event loop after we return, which breaks when that loop has closed.
            await asyncio.to_thread(_probe, self._path)
            conn = await aiosqlite.connect(self._path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"cannot open SQLite database {self._path}: {exc}") from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged batch survives power loss, and the adapters delete their spool on ack.
            await conn.execute("PRAGMA synchronous = FULL")
            await self._migrate(conn)
            await conn.execute("CREATE TEMP TABLE obs_stage AS SELECT * FROM observations WHERE 0")
        except sqlite3.Error as exc:
            await conn.close()
            raise Unavailable(f"cannot prepare SQLite database {self._path}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        """Close the connection (waiting for the operation in progress)."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        await conn.execute(SQLITE_MIGRATIONS_TABLE)
        applied = {row[0] for row in await conn.execute_fetchall("SELECT version FROM schema_migrations")}
        for migration in SQLITE_MIGRATIONS:
            if migration.version in applied:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_micros()),
                )
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    @contextlib.asynccontextmanager
    async def _session(self, *, write: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, held exclusively; with write=True inside one IMMEDIATE transaction."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise Unavailable("the observation store is not open")
            try:
                if not write:
                    yield conn
                    return
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # Locked, busy, I/O or disk-full errors: the database cannot serve now.
                raise Unavailable(f"SQLite database {self._path} unavailable: {exc}") from exc

    async def ping(self) -> None:
        """Run a trivial query."""
        async with self._session() as conn:
            await conn.execute_fetchall("SELECT 1")

    async def insert_batches(self, batches: Sequence[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        """Stage the batches, insert what is new, and append its reward events, all in one transaction."""
        return await self._insert_converted([batch_rows(batch) for batch in batches])

    async def _insert_converted(self, converted: list[list[tuple[Any, ...]]]) -> list[tuple[int, int]]:
        rows = [row for converted_batch in converted for row in converted_batch]
        if not rows:
            return [(0, 0) for _ in converted]
        by_key: dict[tuple[str, int], tuple[Any, ...]] = {}
        for row in rows:
            by_key.setdefault((row[0], row[OBS_STARTED]), row)
        async with self._session(write=True) as conn:
            await conn.executemany(_INSERT_STAGE, rows)
            inserted = await _fetchall(conn, _INSERT_FROM_STAGE)
            await conn.execute("DELETE FROM obs_stage")
            fresh = [by_key[(key[0], key[1])] for key in inserted]
            eligible = [row for row in fresh if eligible_for_reward(row)]
            if eligible:
                scores = await self._feedback_scores(conn, {row[OBS_DECISION_ID] for row in eligible})
                await conn.executemany(_INSERT_REWARD, self.fresh_rewards(eligible, scores, now_micros()))
        return count_stored(converted, fresh)

    @staticmethod
    async def _feedback_scores(
        conn: aiosqlite.Connection, decision_ids: set[str]
    ) -> dict[tuple[str, str], float]:
        """The latest feedback score per (decision_id, tenant) among `decision_ids`."""
        scores: dict[tuple[str, str], float] = {}
        ids = list(decision_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            sql = (
                "SELECT decision_id, tenant, score FROM feedback "
                f"WHERE decision_id IN ({', '.join('?' * len(chunk))}) ORDER BY seq"
            )
            for decision_id, tenant, score in await conn.execute_fetchall(sql, chunk):
                scores[(decision_id, tenant)] = score  # ordered by seq: the latest wins
        return scores

    async def record_feedback(self, req: observer_pb2.RecordFeedbackRequest) -> tuple[str, bool]:
        """Store feedback; when its observation is here, append a correction of the decision's reward."""
        check_feedback(req)
        feedback_id = str(uuid.uuid4())
        now = now_micros()
        async with self._session(write=True) as conn:
            found = await _fetchall(
                conn,
                "SELECT tenant FROM observations WHERE decision_id = ? ORDER BY started_at DESC LIMIT 1",
                (req.decision_id,),
            )
            if found and found[0][0] != req.tenant:
                raise PermissionDenied(f"decision {req.decision_id} belongs to another tenant")
            await conn.execute(
                "INSERT INTO feedback (feedback_id, decision_id, tenant, score, label, comment, source, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    feedback_id,
                    req.decision_id,
                    req.tenant,
                    req.score,
                    req.label,
                    req.comment,
                    req.source,
                    now,
                ),
            )
            if found:
                previous = await _fetchall(
                    conn,
                    f"SELECT {_REWARD_COLS} FROM reward_events WHERE decision_id = ? ORDER BY cursor DESC LIMIT 1",
                    (req.decision_id,),
                )
                if previous:
                    await conn.execute(_INSERT_REWARD, self.correction(previous[0], req.score, now))
        return feedback_id, bool(found)

    async def rewards_after(self, cursor: int, limit: int) -> list[observer_pb2.RewardEvent]:
        """Reward events after `cursor`, oldest first."""
        limit = check_limit(limit, MAX_REWARDS_LIMIT)
        async with self._session() as conn:
            rows = await _fetchall(
                conn,
                f"SELECT cursor, {_REWARD_COLS} FROM reward_events WHERE cursor > ? ORDER BY cursor LIMIT ?",
                (cursor, limit),
            )
        return [reward_event(row, unpack_vector(row[1 + REWARD_FEATURES]), row[-1]) for row in rows]

    async def query_usage(
        self,
        tenant: str,
        start: datetime | None,
        end: datetime | None,
        group_by: Sequence[str],
        bucket_s: int = 0,
    ) -> list[observer_pb2.UsageRow]:
        """Usage aggregated over observations that started in [start, end), in time buckets if asked."""
        groups = check_group_by(group_by)
        check_bucket(bucket_s, start, end, datetime.now(UTC))
        where: list[str] = []
        params: list[Any] = []
        if tenant:
            where.append("tenant = ?")
            params.append(tenant)
        if start is not None:
            where.append("started_at >= ?")
            params.append(datetime_to_micros(start))
        if end is not None:
            where.append("started_at < ?")
            params.append(datetime_to_micros(end))
        sql = usage_query(_USAGE, groups, where, _ERROR_STATUSES, bucket_s)
        async with self._session() as conn:
            rows = await _fetchall(conn, sql, params)
        return [usage_row(groups, bool(bucket_s), row) for row in rows]

    async def list_observations(
        self,
        tenant: str,
        limit: int,
        before: datetime | None,
        before_observation_id: str = "",
        filters: ObservationFilters | None = None,
    ) -> list[observer_pb2.Observation]:
        """The tenant's observations, newest first, keyset-paged on (started_at, observation_id)."""
        if not tenant:
            raise InvalidArgument("listing observations needs a tenant", param="tenant")
        check_page(before, before_observation_id)
        limit = check_limit(limit, MAX_LIST_LIMIT)
        sql = f"SELECT {_READ_COLS} FROM observations WHERE tenant = ?"
        params: list[Any] = [tenant]
        if before is not None:
            micros = datetime_to_micros(before)
            if before_observation_id:
                sql += " AND started_at <= ? AND (started_at < ? OR observation_id < ?)"
                params += [micros, micros, before_observation_id]
            else:
                sql += " AND started_at < ?"
                params.append(micros)

        def bind(value: Any) -> str:
            params.append(value)
            return "?"

        for condition in filter_conditions(filters, bind, datetime_to_micros):
            sql += f" AND {condition}"
        sql += " ORDER BY started_at DESC, observation_id DESC LIMIT ?"
        params.append(limit)
        async with self._session() as conn:
            rows = await _fetchall(conn, sql, params)
        return [observation_from_row(row) for row in rows]

    async def list_feedback(self, decision_id: str, tenant: str) -> list[observer_pb2.FeedbackRecord]:
        """The tenant's feedback for a decision, oldest first (the feedback_decision index)."""
        sql = (
            f"SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE decision_id = ? AND tenant = ? "
            f"ORDER BY seq LIMIT {MAX_FEEDBACK}"
        )
        async with self._session() as conn:
            rows = await _fetchall(conn, sql, (decision_id, tenant))
        return [feedback_record(row, row[5]) for row in rows]

    async def record_audit(self, entry: observer_pb2.AuditEntry) -> tuple[int, bool]:
        """Append one entry (audit_log's UNIQUE audit_id makes a retry a no-op)."""
        audit.check_entry(entry)
        at = entry.at.ToMicroseconds() if entry.HasField("at") else now_micros()
        async with self._session(write=True) as conn:
            rows = await _fetchall(conn, audit.insert_sql(["?"] * 10), audit.insert_values(entry, at))
            if rows:
                return rows[0][0], False
            rows = await _fetchall(conn, "SELECT seq FROM audit_log WHERE audit_id = ?", (entry.audit_id,))
        return rows[0][0], True

    async def list_audit(
        self, tenant: str, start: datetime | None, end: datetime | None, limit: int, before_seq: int = 0
    ) -> list[observer_pb2.AuditEntry]:
        """Newest first by seq, in pages (see audit.list_query)."""
        sql, params = audit.list_query(
            tenant, start, end, limit, before_seq, lambda _: "?", datetime_to_micros
        )
        async with self._session() as conn:
            rows = await _fetchall(conn, sql, params)
        return [audit.entry_from_row(row, row[2]) for row in rows]

    async def arm_stats(self, route: str) -> tuple[list[observer_pb2.ArmStats], int]:
        """Per-arm sums over each decision's latest reward event (a correction replaces the original)."""
        route_filter = "AND r.route = :route" if route else ""
        sql = f"""
            WITH latest AS (
                SELECT r.route, r.model, r.tenant, r.reward, r.quality, r.cost_usd, r.latency_ms
                FROM reward_events r
                WHERE r.cursor <= :bound {route_filter}
                  AND NOT EXISTS (
                      SELECT 1 FROM reward_events l
                      WHERE l.decision_id = r.decision_id AND l.cursor > r.cursor AND l.cursor <= :bound)
            )
            SELECT route, model, '' AS tenant, count(*), total(reward), total(reward * reward),
                   total(quality), total(cost_usd), total(latency_ms)
            FROM latest GROUP BY route, model
            UNION ALL
            SELECT route, model, tenant, count(*), total(reward), total(reward * reward),
                   total(quality), total(cost_usd), total(latency_ms)
            FROM latest WHERE tenant <> '' GROUP BY route, model, tenant
            ORDER BY 1, 2, 3
        """
        async with self._session() as conn:
            bound_rows = await _fetchall(conn, "SELECT coalesce(max(cursor), 0) FROM reward_events")
            bound = bound_rows[0][0]
            rows = await _fetchall(conn, sql, {"bound": bound, "route": route})
        return [arm_stats_row(row) for row in rows], bound

    async def get_decision(self, decision_id: str) -> observer_pb2.GetDecisionResponse | None:
        """The latest observation's record of the decision."""
        if not decision_id:
            return None
        async with self._session() as conn:
            rows = await _fetchall(conn, _DECISION_SQL, (decision_id,))
        return decision_response(rows[0]) if rows else None

    async def maintain(self, now: datetime | None = None) -> None:
        """Delete observations, feedback and reward events older than the retention."""
        cutoff = datetime_to_micros((now or datetime.now(UTC)) - timedelta(days=self.retention_days))
        async with self._session(write=True) as conn:
            await conn.execute("DELETE FROM observations WHERE started_at < ?", (cutoff,))
            await conn.execute("DELETE FROM feedback WHERE created_at < ?", (cutoff,))
            await conn.execute("DELETE FROM reward_events WHERE at < ?", (cutoff,))
