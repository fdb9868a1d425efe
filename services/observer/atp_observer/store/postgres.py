"""The PostgreSQL backend: an asyncpg pool, day-partitioned observations and COPY-based batch ingest."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from atp.observer.v1 import observer_pb2
from atp_common.errors import AtpError, InvalidArgument, PermissionDenied, Unavailable
from atp_observer.store.base import (
    MAX_LIST_LIMIT,
    MAX_REWARDS_LIMIT,
    OBS_FINISHED,
    OBS_STARTED,
    OBSERVATION_COLUMNS,
    REWARD_COLUMNS,
    REWARD_FEATURES,
    Store,
    arm_stats_row,
    check_feedback,
    check_group_by,
    check_limit,
    check_page,
    count_stored,
    datetime_to_micros,
    now_micros,
    observation_from_values,
    observation_values,
    reward_event,
    unpack_vector,
    usage_query,
    usage_row,
)
from atp_observer.store.migrations import POSTGRES_MIGRATIONS, POSTGRES_MIGRATIONS_TABLE
from atp_observer.store.rewards import RewardModel

# Errors that mean "the database cannot serve now", as opposed to a bug in a query.
_UNAVAILABLE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    # A server shutting down ends idle pooled connections with a FATAL; asyncpg may still hand one out, and
    # its next query fails with "another operation is in progress". The pool discards it on release, so
    # the retry gets a fresh connection (seen under `pg_ctl stop -m fast` with ingest running).
    asyncpg.exceptions.InternalClientError,
)
# A transaction that lost a deadlock (partition DDL against ingest) or hit a partition dropped under it is
# safe to run again from the start.
_ATTEMPTS = 3

_OBS_COLS = ", ".join(OBSERVATION_COLUMNS)
_REWARD_COLS = ", ".join(REWARD_COLUMNS)
_INSERT_FROM_STAGE = (
    f"INSERT INTO observations ({_OBS_COLS}) SELECT {_OBS_COLS} FROM obs_stage "
    "ON CONFLICT DO NOTHING RETURNING observation_id, started_at"
)
_INSERT_REWARD = (
    f"INSERT INTO reward_events ({_REWARD_COLS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(REWARD_COLUMNS) + 1))})"
)
_PARTITION_NAME = re.compile(r"^observations_p(\d{8})$")
_STATUS_ERRORS = (
    observer_pb2.ObservationStatus.OBSERVATION_STATUS_ERROR,
    observer_pb2.ObservationStatus.OBSERVATION_STATUS_PARTIAL,
)
_ONE_DAY = timedelta(days=1)
_DAY_MICROS = 86_400_000_000
# PostgreSQL's epoch (2000-01-01 UTC) in microseconds after the Unix epoch. The pool exchanges timestamptz
# values as these integers (see register_codecs), which is also how they travel on the wire.
PG_EPOCH_MICROS = 946_684_800_000_000
_PG_EPOCH_DATE = date(2000, 1, 1)


def _partition_name(day: date) -> str:
    return f"observations_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _micros_row(row: Sequence[Any]) -> list[Any]:
    """An observations row with its timestamps as Unix microseconds, for the shared codec."""
    values = list(row)
    values[OBS_STARTED] += PG_EPOCH_MICROS
    if values[OBS_FINISHED] is not None:
        values[OBS_FINISHED] += PG_EPOCH_MICROS
    return values


def to_pg_micros(value: datetime) -> int:
    """A datetime as the integer the pool exchanges for timestamptz."""
    return datetime_to_micros(value) - PG_EPOCH_MICROS


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: the store takes only transaction-scoped locks, never LISTENs, SETs or
    leaves a cursor open, and keeps its temporary tables on purpose. (The pool still rolls back a
    transaction left open.) asyncpg's default reset costs a round trip on every release, that is one
    more per ingested batch."""


async def register_codecs(conn: asyncpg.Connection) -> None:
    """Exchange timestamptz as int8: microseconds since 2000-01-01 UTC, its binary wire format.

    Ingest then encodes a timestamp as an integer instead of building a datetime per value and having
    asyncpg convert it back (astimezone, subtraction, infinity checks): that was a large share of the CPU
    of a COPY of observations."""
    await conn.set_builtin_type_codec("timestamptz", schema="pg_catalog", codec_name="int8")


# What the reward of a new observation needs from its row: COPY'd to reward_stage, then turned into a
# reward_events row by the atp_append_rewards statement.
_REWARD_INPUT_COLUMNS = (
    "decision_id",
    "tenant",
    "route",
    "model",
    "policy",
    "propensity",
    "features",
    "cost_usd",
    "latency_ms",
    "status",
    "finish_reason",
)
_REWARD_INPUT = operator.itemgetter(*(OBSERVATION_COLUMNS.index(c) for c in _REWARD_INPUT_COLUMNS))
_DECISION_ID, _ROUTE, _STATUS = (OBSERVATION_COLUMNS.index(c) for c in ("decision_id", "route", "status"))
_CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED


def _prepare_append_rewards_sql(reward_model: RewardModel) -> str:
    """PREPARE atp_append_rewards: append the rewards of the new observations in reward_stage.

    Feedback is read under the reward lock: feedback recorded concurrently either committed before (and
    is seen here) or waits for this commit (and then sees these observations). The reward is computed as
    RewardModel.reward does, with the latest feedback score as quality when there is one. Prepared once
    per connection, so the serialised tail does not plan it every time."""
    proxy = reward_model.proxy_quality_sql("s.status", "s.finish_reason")
    return f"""
        PREPARE atp_append_rewards AS
        INSERT INTO reward_events ({_REWARD_COLS})
        SELECT decision_id, tenant, route, model, policy,
               quality - cost_weight * cost_usd - latency_weight * (latency_ms / 1000.0),
               quality, cost_usd, latency_ms, propensity, features, false, 0, 0, statement_timestamp()
        FROM (
            SELECT s.ctid AS position, s.decision_id, s.tenant, s.route, s.model, s.policy, s.propensity,
                   s.features, s.cost_usd, s.latency_ms,
                   coalesce(w.cost_weight, 0) AS cost_weight, coalesce(w.latency_weight, 0) AS latency_weight,
                   coalesce(latest.score, ({proxy})::float8) AS quality
            FROM reward_stage s
            LEFT JOIN LATERAL (
                SELECT f.score FROM feedback f
                WHERE f.decision_id = s.decision_id AND f.tenant = s.tenant
                ORDER BY f.seq DESC LIMIT 1
            ) latest ON true
            LEFT JOIN atp_route_weights w ON w.route = s.route
            OFFSET 0  -- not flattened: the feedback lookup then runs once per row, not once per use
        ) batch
        ORDER BY position"""


class PostgresStore(Store):
    """Observations in PostgreSQL through an asyncpg pool.

    Reward cursors: a bigserial can commit out of order under concurrent transactions, which would let a
    reader that resumes from the highest cursor it saw skip an event committed later with a lower one. So
    every reward append (ingest and feedback) takes a transaction-level advisory lock right before it
    draws cursors and holds it until commit: cursors are then assigned in commit order, and every event
    below a visible one is already visible. The lock is taken after the observations are inserted, so only
    the short append-and-commit tail of concurrent batches is serialised.
    """

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
        self._append_rewards_sql = ""
        self._partition_lock = 0
        # Days whose partition is known to exist, so the ingest path skips the catalog.
        self._partitions: set[date] = set()

    async def open(self) -> None:
        """Apply pending migrations, then open the pool and create the coming days' partitions."""
        if self._pool is not None:
            return
        with self._translate("connect to"):
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout
            )
            try:
                await self._migrate(conn)
                # Advisory locks are per database: derive the keys from the schema so that deployments
                # sharing a database (tests use one schema each) do not serialise each other.
                self._reward_lock, self._partition_lock = await conn.fetchrow(
                    "SELECT hashtext(current_schema() || '.atp_reward_events')::bigint, "
                    "hashtext(current_schema() || '.atp_observation_partitions')::bigint"
                )
                # The serialised tail of an ingest transaction, sent as one simple query: take the lock,
                # append (cursors are drawn here, in commit order), commit.
                self._append_rewards_sql = f"SELECT pg_advisory_xact_lock({int(self._reward_lock)}); EXECUTE atp_append_rewards; COMMIT"
            finally:
                await conn.close(timeout=self._connect_timeout)
            pool = asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                init=self._prepare_connection,
                reset=_keep_session,
            )
            try:
                await pool
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool
        today = datetime.now(UTC).date()
        async with self._connection() as conn:
            await self._ensure_partitions(conn, {today + i * _ONE_DAY for i in range(self._partitions_ahead)})

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
            self._partitions.clear()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # Replicas starting together: one migrates, the others wait and then find nothing to do.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.atp_observer_migrations'))"
            )
            await conn.execute(POSTGRES_MIGRATIONS_TABLE)
            applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in POSTGRES_MIGRATIONS:
                if migration.version in applied:
                    continue
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except AtpError:
            raise
        except _UNAVAILABLE_ERRORS as exc:
            raise Unavailable(f"cannot {action} PostgreSQL: {type(exc).__name__}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool
        if pool is None:
            raise Unavailable("the observation store is not open")
        with self._translate("use"):
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: Iterable[date]) -> None:
        """Create the daily partitions that `days` need and that are not known to exist."""
        missing = sorted(set(days) - self._partitions)
        if not missing:
            return
        async with conn.transaction():
            # Serialise creators: two replicas seeing the same new day must not both CREATE.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._partition_lock)
            for day in missing:
                name = _partition_name(day)
                if await conn.fetchval("SELECT to_regclass($1) IS NULL", name):
                    start, end = _day_start(day), _day_start(day + _ONE_DAY)
                    await conn.execute(
                        f'CREATE TABLE "{name}" PARTITION OF observations '
                        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
        self._partitions.update(missing)

    async def ping(self) -> None:
        """Run a trivial query within the connect timeout."""
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1", timeout=self._connect_timeout)

    async def _prepare_connection(self, conn: asyncpg.Connection) -> None:
        await register_codecs(conn)
        # Per-connection temporary tables. obs_stage: a resent batch COPYs into it, then one INSERT ...
        # SELECT ... ON CONFLICT DO NOTHING RETURNING tells which observations are new. reward_stage: the
        # reward inputs of a batch's new observations. Both are emptied by every commit.
        # atp_route_weights: the reward model's penalties, by route.
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS obs_stage (LIKE observations) ON COMMIT DELETE ROWS; "
            "CREATE TEMP TABLE IF NOT EXISTS reward_stage (decision_id text, tenant text, route text, "
            "model text, policy text, propensity float8, features bytea, cost_usd float8, "
            "latency_ms float8, status smallint, finish_reason text) ON COMMIT DELETE ROWS; "
            "CREATE TEMP TABLE IF NOT EXISTS atp_route_weights "
            "(route text PRIMARY KEY, cost_weight float8 NOT NULL, latency_weight float8 NOT NULL); "
            "TRUNCATE atp_route_weights"
        )
        weights = self.reward_model.route_weights()
        if weights:
            await conn.copy_records_to_table("atp_route_weights", records=weights)
        await conn.execute(_prepare_append_rewards_sql(self.reward_model))

    async def insert_batches(
        self, batches: Sequence[Sequence[observer_pb2.Observation]]
    ) -> list[tuple[int, int]]:
        """Insert what is new in the batches and append its reward events, in one transaction."""
        converted = [[observation_values(obs, PG_EPOCH_MICROS) for obs in batch] for batch in batches]
        rows = [row for batch_rows in converted for row in batch_rows]
        if not rows:
            return [(0, 0) for _ in batches]
        days = {
            _PG_EPOCH_DATE + timedelta(days=day) for day in {row[OBS_STARTED] // _DAY_MICROS for row in rows}
        }
        async with self._connection() as conn:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    await self._ensure_partitions(conn, days)
                    fresh = await self._insert_batch(conn, rows)
                    return count_stored(converted, fresh)
                except asyncpg.CheckViolationError:
                    # No partition for a row: another replica's maintain() dropped one we thought existed.
                    self._partitions.difference_update(days)
                    if attempt == _ATTEMPTS:
                        raise
                except asyncpg.DeadlockDetectedError:
                    if attempt == _ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def _insert_batch(
        self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """One transaction: the new rows, the inputs of their rewards, then the rewards and the commit in
        one round trip. Returns the rows that were new.

        The transaction is driven by hand (not conn.transaction()) so that taking the reward lock,
        appending the rewards and committing reach the server as one simple query: the lock is then held
        for server-side work only, never across a round trip to this process, whose event loop is busy
        encoding other writers' batches. That serialised tail is what bounds ingest throughput."""
        await conn.execute("BEGIN")
        try:
            fresh = await self._insert_rows(conn, rows)
            # A routed decision that was not cancelled earns a reward (eligible_for_reward). Only its
            # inputs cross the wire again; the reward itself is computed in SQL under the lock. (A trigger
            # capturing inserted rows was tried: on a partitioned table it turns COPY into row-by-row
            # inserts, which tripled PostgreSQL's CPU per observation.)
            eligible = [
                row for row in fresh if row[_ROUTE] and row[_DECISION_ID] and row[_STATUS] != _CANCELLED
            ]
            if eligible:
                await conn.copy_records_to_table(
                    "reward_stage", records=map(_REWARD_INPUT, eligible), columns=_REWARD_INPUT_COLUMNS
                )
                await conn.execute(self._append_rewards_sql)
            else:
                await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:
                    # The server went away mid-transaction: drop the connection, so the pool opens a new
                    # one instead of trying (and loudly failing) to reset this one.
                    conn.terminate()
            raise
        return fresh

    @staticmethod
    async def _insert_rows(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert the rows not stored yet (inside the open transaction) and return them."""
        # Fast path: a batch is almost always new, so COPY it straight in. A resent batch (the adapters
        # retry when an ack is lost) hits the primary key, which aborts the transaction; it begins again
        # and takes the deduplicating path. This costs a resend a failed COPY and saves every new batch a
        # second pass over its rows.
        try:
            await conn.copy_records_to_table("observations", records=rows, columns=OBSERVATION_COLUMNS)
            return rows
        except asyncpg.UniqueViolationError:
            await conn.execute("ROLLBACK; BEGIN")
        await conn.copy_records_to_table("obs_stage", records=rows, columns=OBSERVATION_COLUMNS)
        inserted = await conn.fetch(_INSERT_FROM_STAGE)
        by_key: dict[tuple[str, int], tuple[Any, ...]] = {}
        for row in rows:
            by_key.setdefault((row[0], row[OBS_STARTED]), row)
        return [by_key[(key[0], key[1])] for key in inserted]

    async def record_feedback(self, req: observer_pb2.RecordFeedbackRequest) -> tuple[str, bool]:
        """Store feedback; when its observation is here, append a correction of the decision's reward."""
        check_feedback(req)
        feedback_id = str(uuid.uuid4())
        async with self._connection() as conn:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        return await self._record_feedback(conn, req, feedback_id)
                except asyncpg.DeadlockDetectedError:
                    if attempt == _ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def _record_feedback(
        self, conn: asyncpg.Connection, req: observer_pb2.RecordFeedbackRequest, feedback_id: str
    ) -> tuple[str, bool]:
        # The lock first, so this cannot race an ingest of the same decision (see _insert_batch).
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._reward_lock)
        found = await conn.fetchrow(
            "SELECT tenant FROM observations WHERE decision_id = $1 ORDER BY started_at DESC LIMIT 1",
            req.decision_id,
        )
        if found is not None and found[0] != req.tenant:
            raise PermissionDenied(f"decision {req.decision_id} belongs to another tenant")
        now = now_micros() - PG_EPOCH_MICROS
        await conn.execute(
            "INSERT INTO feedback (feedback_id, decision_id, tenant, score, label, comment, source, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            feedback_id,
            req.decision_id,
            req.tenant,
            req.score,
            req.label,
            req.comment,
            req.source,
            now,
        )
        if found is not None:
            previous = await conn.fetchrow(
                f"SELECT {_REWARD_COLS} FROM reward_events WHERE decision_id = $1 ORDER BY cursor DESC LIMIT 1",
                req.decision_id,
            )
            if previous is not None:
                await conn.execute(_INSERT_REWARD, *self.correction(tuple(previous), req.score, now))
        return feedback_id, found is not None

    async def rewards_after(self, cursor: int, limit: int) -> list[observer_pb2.RewardEvent]:
        """Reward events after `cursor`, oldest first."""
        limit = check_limit(limit, MAX_REWARDS_LIMIT)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT cursor, {_REWARD_COLS} FROM reward_events WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                cursor,
                limit,
            )
        return [
            reward_event(row, unpack_vector(row[1 + REWARD_FEATURES]), row[-1] + PG_EPOCH_MICROS)
            for row in rows
        ]

    async def query_usage(
        self, tenant: str, start: datetime | None, end: datetime | None, group_by: Sequence[str]
    ) -> list[observer_pb2.UsageRow]:
        """Usage aggregated over observations that started in [start, end)."""
        groups = check_group_by(group_by)
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
        statuses = ", ".join(str(status) for status in _STATUS_ERRORS)
        aggregates = [
            "count(*)",
            f"count(*) FILTER (WHERE status IN ({statuses}))",
            "coalesce(sum(prompt_tokens), 0)::bigint",
            "coalesce(sum(completion_tokens), 0)::bigint",
            "coalesce(sum(cost_usd), 0)",
            "coalesce(avg(latency_ms), 0)",
        ]
        sql = usage_query(aggregates, groups, where)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [usage_row(groups, row) for row in rows]

    async def list_observations(
        self, tenant: str, limit: int, before: datetime | None, before_observation_id: str = ""
    ) -> list[observer_pb2.Observation]:
        """The tenant's observations, newest first, keyset-paged on (started_at, observation_id)."""
        if not tenant:
            raise InvalidArgument("listing observations needs a tenant", param="tenant")
        check_page(before, before_observation_id)
        limit = check_limit(limit, MAX_LIST_LIMIT)
        sql = f"SELECT {_OBS_COLS} FROM observations WHERE tenant = $1"
        params: list[Any] = [tenant]
        if before is not None:
            params.append(to_pg_micros(before))
            if before_observation_id:
                # started_at <= first, so the (tenant, started_at) index still bounds the scan.
                params.append(before_observation_id)
                sql += " AND started_at <= $2 AND (started_at < $2 OR observation_id < $3)"
            else:
                sql += " AND started_at < $2"
        params.append(limit)
        sql += f" ORDER BY started_at DESC, observation_id DESC LIMIT ${len(params)}"
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [observation_from_values(_micros_row(row)) for row in rows]

    async def arm_stats(self, route: str) -> tuple[list[observer_pb2.ArmStats], int]:
        """Per-arm sums over each decision's latest reward event (a correction replaces the original)."""
        route_filter = "AND route = $2" if route else ""
        sql = f"""
            WITH latest AS (
                SELECT DISTINCT ON (decision_id) route, model, tenant, reward, quality, cost_usd, latency_ms
                FROM reward_events WHERE cursor <= $1 {route_filter}
                ORDER BY decision_id, cursor DESC
            )
            SELECT route, model, CASE WHEN GROUPING(tenant) = 1 THEN '' ELSE tenant END,
                   count(*)::float8, sum(reward), sum(reward * reward), sum(quality), sum(cost_usd),
                   sum(latency_ms)
            FROM latest
            GROUP BY GROUPING SETS ((route, model), (route, model, tenant))
            HAVING GROUPING(tenant) = 1 OR tenant <> ''
            ORDER BY 1, 2, 3
        """
        async with self._connection() as conn:
            # Cursors commit in order (see the class docstring), so everything up to the current maximum is
            # visible and a watcher resuming from it misses nothing.
            bound = await conn.fetchval("SELECT coalesce(max(cursor), 0) FROM reward_events")
            rows = await conn.fetch(sql, bound, route) if route else await conn.fetch(sql, bound)
        return [arm_stats_row(row) for row in rows], bound

    async def get_decision(self, decision_id: str) -> observer_pb2.GetDecisionResponse | None:
        """The latest observation's record of the decision."""
        if not decision_id:
            return None
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT decision, tenant, replica_id, started_at FROM observations "
                "WHERE decision_id = $1 AND decision IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                decision_id,
            )
        if row is None:
            return None
        response = observer_pb2.GetDecisionResponse(tenant=row[1], replica_id=row[2])
        response.decision.ParseFromString(row[0])
        response.decided_at.FromMicroseconds(row[3] + PG_EPOCH_MICROS)
        return response

    async def maintain(self, now: datetime | None = None) -> None:
        """Create the coming days' partitions, drop those wholly past the retention, delete old rows."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.retention_days)
        today = now.astimezone(UTC).date()
        async with self._connection() as conn:
            await self._ensure_partitions(conn, {today + i * _ONE_DAY for i in range(self._partitions_ahead)})
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self._partition_lock)
                names = await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'observations'::regclass"
                )
                for (name,) in names:
                    match = _PARTITION_NAME.match(name)
                    if match is None:
                        continue
                    day = datetime.strptime(match.group(1), "%Y%m%d").date()
                    if _day_start(day + _ONE_DAY) <= cutoff:
                        await conn.execute(f'DROP TABLE "{name}"')
                        self._partitions.discard(day)
            await conn.execute("DELETE FROM feedback WHERE created_at < $1", to_pg_micros(cutoff))
            await conn.execute("DELETE FROM reward_events WHERE at < $1", to_pg_micros(cutoff))
