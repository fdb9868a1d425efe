"""The PostgreSQL backend: an asyncpg pool, day-partitioned observations and COPY-based batch ingest."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument, PermissionDenied, Unavailable
from atp_observer.store import audit, reward_log
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
    OBS_STARTED,
    READ_COLUMNS,
    batch_rows,
    count_stored,
    decision_response,
    now_micros,
    observation_from_row,
)
from atp_observer.store.migrations import POSTGRES_MIGRATIONS
from atp_observer.store.pg_ingest import insert_batch
from atp_observer.store.pg_partitions import ONE_DAY, DailyPartitions, days_of
from atp_observer.store.pg_session import (
    ATTEMPTS,
    PG_EPOCH_MICROS,
    keep_session,
    migrate,
    register_codecs,
    to_pg_micros,
    translate_errors,
)
from atp_observer.store.rewards import RewardModel
from atp_observer.store.usage import (
    UsageDialect,
    check_group_by,
    usage_query,
    usage_row,
)

_READ_COLS = ", ".join(READ_COLUMNS)
_ERROR_STATUSES = ", ".join(
    str(status)
    for status in (
        observer_pb2.ObservationStatus.OBSERVATION_STATUS_ERROR,
        observer_pb2.ObservationStatus.OBSERVATION_STATUS_PARTIAL,
    )
)
# The bucket size is a checked integer, so it is written into the statement.
_USAGE = UsageDialect(
    bucket="(floor(extract(epoch FROM started_at) / {bucket_s}) * {bucket_s})::bigint",
    tag_join="LEFT JOIN LATERAL jsonb_each_text(observations.tags) AS tag(key, value) ON true",
    aggregates=(
        "count(*)",
        "count(*) FILTER (WHERE status IN ({errors}))",
        "coalesce(sum(prompt_tokens), 0)::bigint",
        "coalesce(sum(completion_tokens), 0)::bigint",
        "coalesce(sum({cost}), 0)::bigint",
        "coalesce(avg(latency_ms), 0)",
    ),
    cost_nanos=(
        "CASE WHEN cost_usd >= 0 AND cost_usd <= {max_cost} "
        "THEN floor(cost_usd * {nanos}::float8 + 0.5::float8)::bigint END"
    ),
)
_DECISION_SQL = DECISION_SQL.format(param="$1")


class PostgresStore(Store):
    """Observations in PostgreSQL through an asyncpg pool.

    Reward stream: each transaction that appends rewards writes one reward_log row keyed by its transaction
    id, and readers return only rows below the oldest transaction still running (the snapshot's xmin), so a
    reader resuming from the last cursor it saw never skips a row that committed later with a smaller id.
    Writers therefore need no lock among themselves. One lock remains, between ingest and feedback on the
    same decision: ingest holds a shared advisory lock from before it looks up orphan feedback until it
    commits, feedback takes it exclusively. Feedback then either commits first (and ingest sees it as the
    decision's quality) or waits for the ingest (and corrects the reward it stored); and its correction's
    transaction id is drawn after the ingest's, so the correction follows the original in the stream.
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        min_size: int = 1,
        max_size: int = 10,
        *,
        reward_model: RewardModel,
        retention_days: int = 30,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        partitions_ahead: int = 3,
    ) -> None:
        super().__init__(reward_model=reward_model, retention_days=retention_days)
        if not 0 < min_size <= max_size:
            raise InvalidArgument(
                f"pool sizes must satisfy 0 < min_size <= max_size, got {min_size}, {max_size}"
            )
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._partitions_ahead = partitions_ahead
        self._pool: asyncpg.Pool | None = None
        self._reward_lock = 0
        self._begin_ingest = ""
        self._partitions = DailyPartitions()

    async def open(self) -> None:
        """Apply pending migrations, then open the pool and create the coming days' partitions."""
        if self._pool is not None:
            return
        with translate_errors("connect to"):
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout
            )
            try:
                await self._migrate(conn)
                # Advisory locks are per database: derive the keys from the schema so that deployments
                # sharing a database (tests use one schema each) do not serialise each other.
                self._reward_lock, self._partitions.lock = await conn.fetchrow(
                    "SELECT hashtext(current_schema() || '.atp_reward_events')::bigint, "
                    "hashtext(current_schema() || '.atp_observation_partitions')::bigint"
                )
                # One round trip opens an ingest transaction and takes the shared reward lock.
                self._begin_ingest = f"BEGIN; SELECT pg_advisory_xact_lock_shared({int(self._reward_lock)})"
            finally:
                await conn.close(timeout=self._connect_timeout)
            pool = asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                init=self._prepare_connection,
                reset=keep_session,
            )
            try:
                await pool
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool
        today = datetime.now(UTC).date()
        async with self._connection() as conn:
            await self._partitions.ensure(conn, {today + i * ONE_DAY for i in range(self._partitions_ahead)})

    async def close(self) -> None:
        """Close the pool, waiting up to the connect timeout for connections in use."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # Gracefully, but bounded: whatever is still busy after the timeout is terminated.
            async with asyncio.timeout(self._connect_timeout):
                await pool.close()
        except TimeoutError:
            pool.terminate()
        finally:
            self._partitions.forget()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        await migrate(conn, POSTGRES_MIGRATIONS)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool
        if pool is None:
            raise Unavailable("the observation store is not open")
        with translate_errors("use"):
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn

    async def ping(self) -> None:
        """Run a trivial query within the connect timeout."""
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1", timeout=self._connect_timeout)

    async def _prepare_connection(self, conn: asyncpg.Connection) -> None:
        await register_codecs(conn)
        # A resent batch COPYs into this per-connection stage, then one INSERT ... SELECT ... ON CONFLICT
        # DO NOTHING RETURNING tells which observations are new. Emptied by every commit.
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS obs_stage (LIKE observations) ON COMMIT DELETE ROWS"
        )

    async def insert_batches(self, batches: Sequence[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        """Insert what is new in the batches and append its reward events, in one transaction."""
        return await self._insert_converted([batch_rows(batch, PG_EPOCH_MICROS) for batch in batches])

    async def _insert_converted(self, converted: list[list[tuple[Any, ...]]]) -> list[tuple[int, int]]:
        rows = [row for converted_batch in converted for row in converted_batch]
        if not rows:
            return [(0, 0) for _ in converted]
        days = days_of(row[OBS_STARTED] for row in rows)
        begin, model = self._begin_ingest, self.reward_model
        async with self._connection() as conn:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    await self._partitions.ensure(conn, days)
                    try:
                        fresh = await insert_batch(
                            conn, rows, begin=begin, reward_model=model, deduplicate=False
                        )
                    except asyncpg.UniqueViolationError:
                        fresh = await insert_batch(
                            conn, rows, begin=begin, reward_model=model, deduplicate=True
                        )
                    if fresh is rows:  # the usual case: every row was new
                        return [(len(converted_batch), 0) for converted_batch in converted]
                    return count_stored(converted, fresh)
                except asyncpg.CheckViolationError:
                    # No partition for a row: another replica's maintain() dropped one we thought existed.
                    self._partitions.forget(days)
                    if attempt == ATTEMPTS:
                        raise
                except asyncpg.DeadlockDetectedError:
                    if attempt == ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def record_feedback(self, req: observer_pb2.RecordFeedbackRequest) -> tuple[str, bool]:
        """Store feedback; when its observation is here, append a correction of the decision's reward."""
        check_feedback(req)
        feedback_id = str(uuid.uuid4())
        async with self._connection() as conn:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        return await self._record_feedback(conn, req, feedback_id)
                except asyncpg.DeadlockDetectedError:
                    if attempt == ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def _record_feedback(
        self, conn: asyncpg.Connection, req: observer_pb2.RecordFeedbackRequest, feedback_id: str
    ) -> tuple[str, bool]:
        # Exclusively, before anything else: ingests in flight commit first (see the class docstring).
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._reward_lock)
        found = await conn.fetchrow(
            "SELECT tenant, observation_id, started_at, route, model, policy, propensity, features, "
            "cost_usd, latency_ms, reward, quality FROM observations "
            "WHERE decision_id = $1 ORDER BY started_at DESC LIMIT 1",
            req.decision_id,
        )
        if found is not None and found[0] != req.tenant:
            raise PermissionDenied(f"decision {req.decision_id} belongs to another tenant")
        now = now_micros() - PG_EPOCH_MICROS
        await conn.execute(
            "INSERT INTO feedback (feedback_id, decision_id, tenant, score, label, comment, source, created_at, "
            "orphan) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            feedback_id,
            req.decision_id,
            req.tenant,
            req.score,
            req.label,
            req.comment,
            req.source,
            now,
            found is None,
        )
        if found is not None and found[10] is not None:
            _, observation_id, started_at, route, model, policy, propensity, features = found[:8]
            cost_usd, latency_ms, previous_reward, previous_quality = found[8:]
            reward = self.reward_model.reward(route, req.score, cost_usd, latency_ms)
            await conn.execute(
                "UPDATE observations SET reward = $1, quality = $2 WHERE observation_id = $3 AND started_at = $4",
                reward,
                req.score,
                observation_id,
                started_at,
            )
            event = (
                req.decision_id,
                req.tenant,
                route,
                model,
                policy,
                reward,
                req.score,
                cost_usd,
                latency_ms,
            )
            await conn.execute(
                reward_log.APPEND_CORRECTION_SQL,
                reward_log.pack_correction((*event, propensity, features)),
                previous_reward,
                previous_quality,
                now,
            )
        return feedback_id, found is not None

    async def rewards_after(self, cursor: int, limit: int) -> list[observer_pb2.RewardEvent]:
        """Reward events after `cursor`, oldest first."""
        limit = check_limit(limit, MAX_REWARDS_LIMIT)
        events: list[observer_pb2.RewardEvent] = []
        first_xid = max(cursor, 0) >> reward_log.CURSOR_POSITION_BITS
        async with self._connection() as conn:
            while len(events) < limit:
                rows = await conn.fetch(reward_log.READ_SQL, str(first_xid), reward_log.PAGE_ROWS)
                for row in rows:
                    events.extend(
                        reward_log.log_events(
                            row, after=cursor, limit=limit - len(events), epoch_micros=PG_EPOCH_MICROS
                        )
                    )
                    if len(events) >= limit:
                        break
                if len(rows) < reward_log.PAGE_ROWS:
                    break
                first_xid = rows[-1][0] + 1
        return events

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
        # Literal conditions (not `$1 = '' OR ...`) so the planner prunes partitions and uses the index.
        where: list[str] = []
        params: list[Any] = []
        if tenant:
            params.append(tenant)
            where.append(f"tenant = ${len(params)}")
        if start is not None:
            params.append(to_pg_micros(start))
            where.append(f"started_at >= ${len(params)}")
        if end is not None:
            params.append(to_pg_micros(end))
            where.append(f"started_at < ${len(params)}")
        sql = usage_query(_USAGE, groups, where, _ERROR_STATUSES, bucket_s)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
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
        sql = f"SELECT {_READ_COLS} FROM observations WHERE tenant = $1"
        params: list[Any] = [tenant]
        if before is not None:
            params.append(to_pg_micros(before))
            if before_observation_id:
                # started_at <= first, so the (tenant, started_at) index still bounds the scan.
                params.append(before_observation_id)
                sql += " AND started_at <= $2 AND (started_at < $2 OR observation_id < $3)"
            else:
                sql += " AND started_at < $2"

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        for condition in filter_conditions(filters, bind, to_pg_micros):
            sql += f" AND {condition}"
        sql += f" ORDER BY started_at DESC, observation_id DESC LIMIT {bind(limit)}"
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [observation_from_row(row, PG_EPOCH_MICROS) for row in rows]

    async def list_feedback(self, decision_id: str, tenant: str) -> list[observer_pb2.FeedbackRecord]:
        """The tenant's feedback for a decision, oldest first (the feedback_decision index)."""
        sql = (
            f"SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE decision_id = $1 AND tenant = $2 "
            f"ORDER BY seq LIMIT {MAX_FEEDBACK}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, decision_id, tenant)
        return [feedback_record(row, row[5] + PG_EPOCH_MICROS) for row in rows]

    async def record_audit(self, entry: observer_pb2.AuditEntry) -> tuple[int, bool]:
        """Append one entry (audit_log's UNIQUE audit_id makes a retry a no-op)."""
        audit.check_entry(entry)
        at = (entry.at.ToMicroseconds() if entry.HasField("at") else now_micros()) - PG_EPOCH_MICROS
        casts = [f"${n}" for n in range(1, 9)] + ["$9::jsonb", "$10::jsonb"]
        async with self._connection() as conn, conn.transaction():
            seq = await conn.fetchval(audit.insert_sql(casts), *audit.insert_values(entry, at))
            if seq is not None:
                return int(seq), False
            seq = await conn.fetchval("SELECT seq FROM audit_log WHERE audit_id = $1", entry.audit_id)
        return int(seq), True

    async def list_audit(
        self, tenant: str, start: datetime | None, end: datetime | None, limit: int, before_seq: int = 0
    ) -> list[observer_pb2.AuditEntry]:
        """Newest first by seq, in pages (see audit.list_query)."""
        sql, params = audit.list_query(tenant, start, end, limit, before_seq, "${}".format, to_pg_micros)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [audit.entry_from_row(row, row[2] + PG_EPOCH_MICROS) for row in rows]

    async def arm_stats(self, route: str) -> tuple[list[observer_pb2.ArmStats], int]:
        """Per-arm sums of each decision's current reward, as of the cursor returned (see read_arm_stats)."""
        async with self._connection() as conn:
            return await reward_log.read_arm_stats(conn, route)

    async def get_decision(self, decision_id: str) -> observer_pb2.GetDecisionResponse | None:
        """The latest observation's record of the decision."""
        if not decision_id:
            return None
        async with self._connection() as conn:
            row = await conn.fetchrow(_DECISION_SQL, decision_id)
        return None if row is None else decision_response(row, PG_EPOCH_MICROS)

    async def maintain(self, now: datetime | None = None) -> None:
        """Create the coming days' partitions, drop those wholly past the retention, delete old rows."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.retention_days)
        today = now.astimezone(UTC).date()
        async with self._connection() as conn:
            await self._partitions.ensure(conn, {today + i * ONE_DAY for i in range(self._partitions_ahead)})
            await self._partitions.drop_before(conn, cutoff)
            await conn.execute("DELETE FROM feedback WHERE created_at < $1", to_pg_micros(cutoff))
            await conn.execute("DELETE FROM reward_log WHERE at < $1", to_pg_micros(cutoff))
