"""The PostgreSQL backend: an asyncpg pool, day-partitioned observations and COPY-based batch ingest."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from atp.observer.v1 import observer_pb2
from atp_common.errors import AtpError, InvalidArgument, PermissionDenied, Unavailable
from atp_observer.store import audit, reward_log
from atp_observer.store.base import (
    DECISION_SQL,
    MAX_LIST_LIMIT,
    MAX_REWARDS_LIMIT,
    OBS_COST,
    OBS_DECISION_ID,
    OBS_FINISH_REASON,
    OBS_LATENCY,
    OBS_ROUTE,
    OBS_STARTED,
    OBS_STATUS,
    OBS_TENANT,
    READ_COLUMNS,
    Store,
    batch_values,
    check_feedback,
    check_group_by,
    check_limit,
    check_page,
    count_stored,
    datetime_to_micros,
    decision_response,
    now_micros,
    observation_from_row,
    usage_query,
    usage_row,
)
from atp_observer.store.console import (
    FEEDBACK_COLUMNS,
    MAX_FEEDBACK,
    ObservationFilters,
    check_bucket,
    feedback_record,
    filter_conditions,
)
from atp_observer.store.migrations import POSTGRES_MIGRATIONS, POSTGRES_MIGRATIONS_TABLE, Migration
from atp_observer.store.reward_log import STORED_COLUMNS
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

_READ_COLS = ", ".join(READ_COLUMNS)
_STORED_COLS = ", ".join(STORED_COLUMNS)
_INSERT_FROM_STAGE = (
    f"INSERT INTO observations ({_STORED_COLS}) SELECT {_STORED_COLS} FROM obs_stage "
    "ON CONFLICT DO NOTHING RETURNING observation_id, started_at"
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


_DECISION_SQL = DECISION_SQL.format(param="$1")
_CANCELLED = observer_pb2.ObservationStatus.OBSERVATION_STATUS_CANCELLED
_NO_REWARD = (None, None)


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> None:
    """Apply those of `migrations` not applied yet, in one transaction."""
    async with conn.transaction():
        # Replicas starting together: one migrates, the others wait and then find nothing to do.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.atp_observer_migrations'))"
        )
        await conn.execute(POSTGRES_MIGRATIONS_TABLE)
        applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )


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
        await migrate(conn, POSTGRES_MIGRATIONS)

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except AtpError:
            raise
        except _UNAVAILABLE_ERRORS as exc:
            if isinstance(exc, ValueError):
                # asyncpg's client-side DataError (an InterfaceError): a value the table cannot take is a
                # bug to report, not an outage to wait out.
                raise
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
        # A resent batch COPYs into this per-connection stage, then one INSERT ... SELECT ... ON CONFLICT
        # DO NOTHING RETURNING tells which observations are new. Emptied by every commit.
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS obs_stage (LIKE observations) ON COMMIT DELETE ROWS"
        )

    async def insert_batches(self, batches: Sequence[observer_pb2.IngestRequest]) -> list[tuple[int, int]]:
        """Insert what is new in the batches and append its reward events, in one transaction."""
        try:
            return await self._insert_converted([batch_values(batch, PG_EPOCH_MICROS) for batch in batches])
        except (asyncpg.DataError, asyncpg.NotNullViolationError, ValueError, TypeError):
            # (ValueError: asyncpg's client-side DataError; TypeError: a value of the wrong type met by
            # the reward computation.)
            if not any(batch.rows for batch in batches):
                raise
            # The producer's rows did not fit the table: the observations themselves are the record.
            return await self._insert_converted(
                [batch_values(batch, PG_EPOCH_MICROS, producer_rows=False) for batch in batches]
            )

    async def _insert_converted(self, converted: list[list[tuple[Any, ...]]]) -> list[tuple[int, int]]:
        rows = [row for batch_rows in converted for row in batch_rows]
        if not rows:
            return [(0, 0) for _ in converted]
        days = {
            _PG_EPOCH_DATE + timedelta(days=day) for day in {row[OBS_STARTED] // _DAY_MICROS for row in rows}
        }
        async with self._connection() as conn:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    await self._ensure_partitions(conn, days)
                    try:
                        fresh = await self._insert_batch(conn, rows, deduplicate=False)
                    except asyncpg.UniqueViolationError:
                        fresh = await self._insert_batch(conn, rows, deduplicate=True)
                    if fresh is rows:  # the usual case: every row was new
                        return [(len(batch_rows), 0) for batch_rows in converted]
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
        self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]], *, deduplicate: bool
    ) -> list[tuple[Any, ...]]:
        """One transaction: the new rows with their rewards, and those rewards as one reward_log row.
        Returns the rows that were new.

        Five round trips whatever the batch size: begin with the shared reward lock; the orphan feedback
        of these decisions; the rows; the log row; commit. The transaction is driven by hand (not
        conn.transaction()) so that beginning and locking share a round trip. The transaction id, which
        orders the log row, is drawn by the first write, so under the lock."""
        await conn.execute(self._begin_ingest)
        try:
            decisions = reward_log.ID_SEPARATOR.join({row[OBS_DECISION_ID] for row in rows} - {""})
            scores: dict[tuple[str, str], float] = {}
            orphan_seqs: dict[tuple[str, str], list[int]] = {}
            for seq, decision_id, tenant, score in (
                await conn.fetch(reward_log.ORPHANS_SQL, decisions) if decisions else ()
            ):
                scores[(decision_id, tenant)] = score  # the latest feedback wins
                orphan_seqs.setdefault((decision_id, tenant), []).append(seq)
            stored = self._with_rewards(rows, scores)
            fresh = await self._insert_rows(conn, stored, deduplicate)
            rewarded = [row for row in fresh if row[reward_log.REWARD] is not None]
            if rewarded:
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
        if fresh is stored:
            return rows
        originals = {id(row): original for row, original in zip(stored, rows, strict=True)}
        return [originals[id(row)] for row in fresh]

    def _with_rewards(
        self, rows: list[tuple[Any, ...]], scores: dict[tuple[str, str], float]
    ) -> list[tuple[Any, ...]]:
        """The rows to store: each observation with its decision's reward and quality (None, None when it
        earns none, see eligible_for_reward). Quality is the latest orphan feedback's score, else the
        outcome's proxy. Runs per observation, hence the locals."""
        model = self.reward_model
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

    @staticmethod
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
        statuses = ", ".join(str(status) for status in _STATUS_ERRORS)
        aggregates = [
            "count(*)",
            f"count(*) FILTER (WHERE status IN ({statuses}))",
            "coalesce(sum(prompt_tokens), 0)::bigint",
            "coalesce(sum(completion_tokens), 0)::bigint",
            "coalesce(sum(cost_usd), 0)",
            "coalesce(avg(latency_ms), 0)",
        ]
        # bucket_s is a checked integer, so it is written into the statement.
        bucket = (
            f"(floor(extract(epoch FROM started_at) / {bucket_s}) * {bucket_s})::bigint" if bucket_s else ""
        )
        sql = usage_query(aggregates, groups, where, bucket)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        labels = ("bucket", *groups) if bucket_s else groups
        return [usage_row(labels, row) for row in rows]

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
        """Per-arm sums of each decision's current reward (a correction replaces the original), as of the
        cursor returned: a watcher resuming from it neither misses an event nor counts one twice."""
        where = "reward IS NOT NULL" + (" AND route = $1" if route else "")
        sql = f"""
            SELECT route, model, CASE WHEN GROUPING(tenant) = 1 THEN '' ELSE tenant END,
                   count(*)::float8, sum(reward), sum(reward * reward), sum(quality), sum(cost_usd),
                   sum(latency_ms)
            FROM observations WHERE {where}
            GROUP BY GROUPING SETS ((route, model), (route, model, tenant))
            HAVING GROUPING(tenant) = 1 OR tenant <> ''
        """
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
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
                f"SELECT {reward_log.ROW} FROM reward_log WHERE xid >= $1::text::xid8 ORDER BY xid DESC",
                str(horizon),
            )
            rows = await (conn.fetch(sql, route) if route else conn.fetch(sql))
        sums = {(row[0], row[1], row[2]): list(row[3:]) for row in rows}
        for log_row in above:
            for event in reversed(
                reward_log.log_events(
                    log_row, after=-1, limit=reward_log.POSITION_MASK + 1, epoch_micros=PG_EPOCH_MICROS
                )
            ):
                if not route or event.route == route:
                    reward_log.take_back(sums, event)
        bound = 0
        if last is not None:
            xid, position, count = last
            bound = (xid << reward_log.CURSOR_POSITION_BITS) | (count - 1 if position is None else position)
        arms = [
            observer_pb2.ArmStats(
                route=key[0],
                model=key[1],
                tenant=key[2],
                pulls=values[0],
                reward_sum=values[1],
                reward_sq_sum=values[2],
                quality_sum=values[3],
                cost_sum=values[4],
                latency_sum=values[5],
            )
            for key, values in sorted(sums.items())
            if values[0] > 0
        ]
        return arms, bound

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
            await conn.execute("DELETE FROM reward_log WHERE at < $1", to_pg_micros(cutoff))
