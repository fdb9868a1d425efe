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
)
