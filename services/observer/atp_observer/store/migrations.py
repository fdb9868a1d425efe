"""Versioned schema migrations per backend; a released migration is never edited, only followed by another."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: statements run in one transaction, then recorded in schema_migrations."""

    version: int
    name: str
    statements: tuple[str, ...]


POSTGRES_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

SQLITE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)"""

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "observations, feedback, reward_events",
        (
            # Range-partitioned by day so retention is a DROP of whole partitions; the partition key must be
            # in the primary key, and a resent observation carries the same started_at, so it still dedups.
            """
            CREATE TABLE observations (
                observation_id text NOT NULL,
                request_id text NOT NULL,
                decision_id text NOT NULL,
                tenant text NOT NULL,
                route text NOT NULL,
                model text NOT NULL,
                provider text NOT NULL,
                policy text NOT NULL,
                propensity double precision NOT NULL,
                features real[] NOT NULL,
                prompt_hash text NOT NULL,
                prompt_text text NOT NULL,
                prompt_tokens bigint NOT NULL,
                completion_tokens bigint NOT NULL,
                cached_tokens bigint NOT NULL,
                reasoning_tokens bigint NOT NULL,
                usage_estimated boolean NOT NULL,
                cost_usd double precision NOT NULL,
                latency_ms double precision NOT NULL,
                ttft_ms double precision NOT NULL,
                provider_ms double precision NOT NULL,
                status smallint NOT NULL,
                error_class text NOT NULL,
                finish_reason text NOT NULL,
                attempts integer NOT NULL,
                started_at timestamptz NOT NULL,
                finished_at timestamptz,
                replica_id text NOT NULL,
                decision bytea,
                PRIMARY KEY (observation_id, started_at)
            ) PARTITION BY RANGE (started_at)
            """,
            # list_observations and tenant-scoped usage.
            "CREATE INDEX observations_tenant_started ON observations (tenant, started_at DESC)",
            # get_decision and the feedback join.
            "CREATE INDEX observations_decision ON observations (decision_id) WHERE decision_id <> ''",
            """
            CREATE TABLE feedback (
                seq bigserial PRIMARY KEY,
                feedback_id text NOT NULL UNIQUE,
                decision_id text NOT NULL,
                tenant text NOT NULL,
                score double precision NOT NULL,
                label text NOT NULL,
                comment text NOT NULL,
                source text NOT NULL,
                created_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX feedback_decision ON feedback (decision_id, seq)",
            # BRIN: rows arrive in time order, and retention is the only reader.
            "CREATE INDEX feedback_created ON feedback USING brin (created_at)",
            """
            CREATE TABLE reward_events (
                cursor bigserial PRIMARY KEY,
                decision_id text NOT NULL,
                tenant text NOT NULL,
                route text NOT NULL,
                model text NOT NULL,
                policy text NOT NULL,
                reward double precision NOT NULL,
                quality double precision NOT NULL,
                cost_usd double precision NOT NULL,
                latency_ms double precision NOT NULL,
                propensity double precision NOT NULL,
                features real[] NOT NULL,
                correction boolean NOT NULL,
                previous_reward double precision NOT NULL,
                previous_quality double precision NOT NULL,
                at timestamptz NOT NULL
            )
            """,
            # The latest event of a decision (corrections) and retention.
            "CREATE INDEX reward_events_decision ON reward_events (decision_id, cursor)",
            "CREATE INDEX reward_events_at ON reward_events USING brin (at)",
        ),
    ),
    Migration(
        2,
        "feature vectors as packed little-endian float32 bytea",
        (
            # Encoding a real[] costs asyncpg a type check per element on every ingested row (about a fifth
            # of the observer's CPU under load), and no query looks inside the vector. Packed bytes are the
            # same float32 values, in the layout SQLite already uses. float4send gives big-endian bytes,
            # hence the reversal. A pg_temp function lives only for this migration's session.
            """
            CREATE FUNCTION pg_temp.atp_pack_float4(vector real[]) RETURNS bytea
            LANGUAGE sql IMMUTABLE STRICT AS $$
                SELECT coalesce(
                    string_agg(
                        substr(b, 4, 1) || substr(b, 3, 1) || substr(b, 2, 1) || substr(b, 1, 1),
                        ''::bytea ORDER BY n),
                    ''::bytea)
                FROM unnest(vector) WITH ORDINALITY AS u(f, n), LATERAL float4send(f) AS b
            $$
            """,
            "ALTER TABLE observations ALTER COLUMN features TYPE bytea USING pg_temp.atp_pack_float4(features)",
            "ALTER TABLE reward_events ALTER COLUMN features TYPE bytea USING pg_temp.atp_pack_float4(features)",
            "DROP FUNCTION pg_temp.atp_pack_float4(real[])",
        ),
    ),
    Migration(
        3,
        "reward log ordered by transaction id; current reward on the observation; orphan feedback",
        (
            # One row per transaction that appends rewards, its events in `events`: a JSON array of eleven
            # parallel arrays (decision_ids, tenants, routes, models, policies, rewards, qualities, costs,
            # latencies, propensities, hex-encoded packed features), one element per event. A reader takes
            # only rows whose transaction id is below the oldest transaction still running, so rows that
            # commit out of xid order never let a resuming reader skip one, and writers need no lock
            # between them. An event's cursor is xid << 20 | position (see store/postgres.py). `positions`
            # is NULL for rows written here (events 0..n-1); rows moved from reward_events keep their old
            # cursors through it. `corrections` and the previous values are NULL when no event of the row
            # is a correction (ingest); feedback appends a row of one correction.
            """
            CREATE TABLE reward_log (
                xid xid8 PRIMARY KEY,
                event_count integer NOT NULL,
                events bytea NOT NULL,
                positions integer[],
                corrections boolean[],
                previous_rewards double precision[],
                previous_qualities double precision[],
                at timestamptz NOT NULL
            )
            """,
            # Compressing every append costs more CPU than the space is worth; retention bounds the table.
            "ALTER TABLE reward_log ALTER COLUMN events SET STORAGE EXTERNAL",
            "CREATE INDEX reward_log_at ON reward_log USING brin (at)",
            # The decision's current reward (NULL: it earns none): a correction reads what it replaces
            # here, and arm statistics sum it.
            "ALTER TABLE observations ADD COLUMN reward double precision, ADD COLUMN quality double precision",
            # The request's trace, to go from an observation to its spans.
            "ALTER TABLE observations ADD COLUMN trace_id text NOT NULL DEFAULT ''",
            # Prompt tokens written to the provider's prompt cache.
            "ALTER TABLE observations ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0",
            # Feedback that arrived before its observation; ingest looks only among these.
            "ALTER TABLE feedback ADD COLUMN orphan boolean NOT NULL DEFAULT false",
            "CREATE INDEX feedback_orphans ON feedback (decision_id, seq) WHERE orphan",
            """
            UPDATE feedback f SET orphan = true
            WHERE NOT EXISTS (
                SELECT 1 FROM observations o WHERE o.decision_id = f.decision_id AND o.tenant = f.tenant
            )
            """,
            """
            UPDATE observations o SET reward = latest.reward, quality = latest.quality
            FROM (
                SELECT DISTINCT ON (decision_id) decision_id, tenant, reward, quality
                FROM reward_events ORDER BY decision_id, cursor DESC
            ) latest
            WHERE o.decision_id = latest.decision_id AND o.tenant = latest.tenant
            """,
            # Every cursor drawn from now on (xid << 20 or more) must exceed the old ones. It does: each old
            # event was appended by a transaction with a smaller xid, fewer than 2^20 events per transaction.
            """
            DO $$
            BEGIN
                IF (SELECT coalesce(max(cursor), 0) FROM reward_events)
                        >= (pg_current_xact_id()::text::bigint << 20) THEN
                    RAISE EXCEPTION 'reward cursors too large to move into reward_log';
                END IF;
            END
            $$
            """,
            """
            INSERT INTO reward_log (
                xid, event_count, events, positions, corrections, previous_rewards, previous_qualities, at
            )
            SELECT (cursor >> 20)::text::xid8, count(*),
                   convert_to(json_build_array(
                       array_agg(decision_id ORDER BY cursor), array_agg(tenant ORDER BY cursor),
                       array_agg(route ORDER BY cursor), array_agg(model ORDER BY cursor),
                       array_agg(policy ORDER BY cursor), array_agg(reward ORDER BY cursor),
                       array_agg(quality ORDER BY cursor), array_agg(cost_usd ORDER BY cursor),
                       array_agg(latency_ms ORDER BY cursor), array_agg(propensity ORDER BY cursor),
                       array_agg(encode(features, 'hex') ORDER BY cursor)
                   )::text, 'UTF8'),
                   array_agg((cursor & 1048575)::integer ORDER BY cursor),
                   array_agg(correction ORDER BY cursor),
                   array_agg(previous_reward ORDER BY cursor), array_agg(previous_quality ORDER BY cursor),
                   max(at)
            FROM reward_events GROUP BY cursor >> 20
            """,
            "DROP TABLE reward_events",
        ),
    ),
    Migration(
        4,
        "observations keep their queried fields as columns and the rest as the serialized observation",
        (
            # Ingest writes the columns that queries and rewards read and the observation's own bytes in
            # `payload`; reading and encoding sixteen more columns per row was half the observer's CPU.
            # The other columns stay for the rows stored before (read back from them until retention
            # removes them) and are left NULL from now on.
            "ALTER TABLE observations ADD COLUMN payload bytea",
            """
            ALTER TABLE observations
                ALTER COLUMN trace_id DROP DEFAULT,
                ALTER COLUMN cache_write_tokens DROP DEFAULT,
                ALTER COLUMN request_id DROP NOT NULL,
                ALTER COLUMN provider DROP NOT NULL,
                ALTER COLUMN prompt_hash DROP NOT NULL,
                ALTER COLUMN prompt_text DROP NOT NULL,
                ALTER COLUMN cached_tokens DROP NOT NULL,
                ALTER COLUMN reasoning_tokens DROP NOT NULL,
                ALTER COLUMN usage_estimated DROP NOT NULL,
                ALTER COLUMN ttft_ms DROP NOT NULL,
                ALTER COLUMN provider_ms DROP NOT NULL,
                ALTER COLUMN error_class DROP NOT NULL,
                ALTER COLUMN attempts DROP NOT NULL,
                ALTER COLUMN replica_id DROP NOT NULL,
                ALTER COLUMN trace_id DROP NOT NULL,
                ALTER COLUMN cache_write_tokens DROP NOT NULL
            """,
        ),
    ),
    Migration(
        5,
        "observations carry who they were for: the key, the end user, the deployment and the tags",
        (
            # Usage groups by these. Rows stored before keep '' (and no tags): their values are in the
            # payload, which SQL cannot read. A constant default makes each ADD COLUMN a catalog change, not
            # a rewrite of every partition. No index: usage scans a time range through the started_at
            # indexes and groups what it finds; nothing looks an observation up by key, user or tag.
            """
            ALTER TABLE observations
                ADD COLUMN key_id text NOT NULL DEFAULT '',
                ADD COLUMN end_user text NOT NULL DEFAULT '',
                ADD COLUMN deployment text NOT NULL DEFAULT '',
                ADD COLUMN tags jsonb
            """,
        ),
    ),
)

# The columns of SQLite's observations at schema 2 (a literal: a released migration never changes).
_SQLITE_V2_COLUMNS = (
    "observation_id, request_id, decision_id, tenant, route, model, provider, policy, propensity, features, "
    "prompt_hash, prompt_text, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, "
    "usage_estimated, cost_usd, latency_ms, ttft_ms, provider_ms, status, error_class, finish_reason, "
    "attempts, started_at, finished_at, replica_id, decision, trace_id, cache_write_tokens"
)

# The same logical schema; timestamps are INTEGER microseconds since the epoch (exact, fast to compare),
# feature vectors are little-endian float32 BLOBs.
SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "observations, feedback, reward_events",
        (
            """
            CREATE TABLE observations (
                observation_id TEXT NOT NULL,
                request_id TEXT NOT NULL,
                decision_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                route TEXT NOT NULL,
                model TEXT NOT NULL,
                provider TEXT NOT NULL,
                policy TEXT NOT NULL,
                propensity REAL NOT NULL,
                features BLOB NOT NULL,
                prompt_hash TEXT NOT NULL,
                prompt_text TEXT NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                cached_tokens INTEGER NOT NULL,
                reasoning_tokens INTEGER NOT NULL,
                usage_estimated INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                latency_ms REAL NOT NULL,
                ttft_ms REAL NOT NULL,
                provider_ms REAL NOT NULL,
                status INTEGER NOT NULL,
                error_class TEXT NOT NULL,
                finish_reason TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                started_at INTEGER NOT NULL,
                finished_at INTEGER,
                replica_id TEXT NOT NULL,
                decision BLOB,
                PRIMARY KEY (observation_id, started_at)
            )
            """,
            "CREATE INDEX observations_tenant_started ON observations (tenant, started_at DESC)",
            "CREATE INDEX observations_started ON observations (started_at)",
            "CREATE INDEX observations_decision ON observations (decision_id) WHERE decision_id <> ''",
            """
            CREATE TABLE feedback (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                feedback_id TEXT NOT NULL UNIQUE,
                decision_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                score REAL NOT NULL,
                label TEXT NOT NULL,
                comment TEXT NOT NULL,
                source TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX feedback_decision ON feedback (decision_id, seq)",
            "CREATE INDEX feedback_created ON feedback (created_at)",
            # AUTOINCREMENT: a cursor is never reused, even after retention deletes the newest rows.
            """
            CREATE TABLE reward_events (
                cursor INTEGER PRIMARY KEY AUTOINCREMENT,
                decision_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                route TEXT NOT NULL,
                model TEXT NOT NULL,
                policy TEXT NOT NULL,
                reward REAL NOT NULL,
                quality REAL NOT NULL,
                cost_usd REAL NOT NULL,
                latency_ms REAL NOT NULL,
                propensity REAL NOT NULL,
                features BLOB NOT NULL,
                correction INTEGER NOT NULL,
                previous_reward REAL NOT NULL,
                previous_quality REAL NOT NULL,
                at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX reward_events_decision ON reward_events (decision_id, cursor)",
            "CREATE INDEX reward_events_at ON reward_events (at)",
        ),
    ),
    Migration(
        2,
        "observations carry their trace id and cache-write tokens",
        (
            "ALTER TABLE observations ADD COLUMN trace_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE observations ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        3,
        "observations keep their queried fields as columns and the rest as the serialized observation",
        (
            # As PostgreSQL's migration 4. SQLite cannot drop NOT NULL in place, so the table is rebuilt
            # with the columns ingest writes first and the legacy ones nullable.
            """
            CREATE TABLE observations_v3 (
                observation_id TEXT NOT NULL,
                decision_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                route TEXT NOT NULL,
                model TEXT NOT NULL,
                policy TEXT NOT NULL,
                propensity REAL NOT NULL,
                features BLOB NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                latency_ms REAL NOT NULL,
                status INTEGER NOT NULL,
                finish_reason TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                payload BLOB,
                request_id TEXT,
                provider TEXT,
                prompt_hash TEXT,
                prompt_text TEXT,
                cached_tokens INTEGER,
                reasoning_tokens INTEGER,
                usage_estimated INTEGER,
                ttft_ms REAL,
                provider_ms REAL,
                error_class TEXT,
                attempts INTEGER,
                finished_at INTEGER,
                replica_id TEXT,
                decision BLOB,
                trace_id TEXT,
                cache_write_tokens INTEGER,
                PRIMARY KEY (observation_id, started_at)
            )
            """,
            f"INSERT INTO observations_v3 ({_SQLITE_V2_COLUMNS}) SELECT {_SQLITE_V2_COLUMNS} FROM observations",
            "DROP TABLE observations",
            "ALTER TABLE observations_v3 RENAME TO observations",
            "CREATE INDEX observations_tenant_started ON observations (tenant, started_at DESC)",
            "CREATE INDEX observations_started ON observations (started_at)",
            "CREATE INDEX observations_decision ON observations (decision_id) WHERE decision_id <> ''",
        ),
    ),
    Migration(
        4,
        "observations carry who they were for: the key, the end user, the deployment and the tags",
        (
            # As PostgreSQL's migration 5; tags are a JSON object in TEXT.
            "ALTER TABLE observations ADD COLUMN key_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE observations ADD COLUMN end_user TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE observations ADD COLUMN deployment TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE observations ADD COLUMN tags TEXT",
        ),
    ),
)

# The admin audit log (PostgreSQL 6, SQLite 5): append-only, outside observation retention (an audit trail
# outlives the traffic it governs, and admin actions are few). Its own table: it assumes nothing of the
# observation columns other migrations add.
POSTGRES_MIGRATIONS += (
    Migration(
        6,
        "admin audit log",
        (
            """
            CREATE TABLE audit_log (
                seq bigserial PRIMARY KEY,
                audit_id text NOT NULL UNIQUE,
                at timestamptz NOT NULL,
                actor_key_id text NOT NULL,
                actor_role text NOT NULL,
                actor_tenant text NOT NULL,
                action text NOT NULL,
                tenant text NOT NULL,
                target text NOT NULL,
                before_json jsonb,
                after_json jsonb
            )
            """,
            "CREATE INDEX audit_log_tenant_seq ON audit_log (tenant, seq DESC)",
            "CREATE INDEX audit_log_at ON audit_log (at)",
        ),
    ),
)

SQLITE_MIGRATIONS += (
    Migration(
        5,
        "admin audit log",
        (
            # AUTOINCREMENT: a page cursor (seq) is never reused.
            """
            CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                audit_id TEXT NOT NULL UNIQUE,
                at INTEGER NOT NULL,
                actor_key_id TEXT NOT NULL,
                actor_role TEXT NOT NULL,
                actor_tenant TEXT NOT NULL,
                action TEXT NOT NULL,
                tenant TEXT NOT NULL,
                target TEXT NOT NULL,
                before_json TEXT,
                after_json TEXT
            )
            """,
            "CREATE INDEX audit_log_tenant_seq ON audit_log (tenant, seq DESC)",
            "CREATE INDEX audit_log_at ON audit_log (at)",
        ),
    ),
)
