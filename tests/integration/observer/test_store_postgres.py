"""The observation store's contract suite again on a real PostgreSQL, and what only PostgreSQL has:
daily partitions and the migration of stored vectors."""

from __future__ import annotations

from array import array
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from atp_observer.store import PostgresStore, Store
from atp_observer.store.layout import unpack_vector
from atp_observer.store.migrations import POSTGRES_MIGRATIONS, POSTGRES_MIGRATIONS_TABLE
from tests.support.observations import REWARDS, all_rewards, make_obs, postgres_stores

# The contract tests, collected again here: their `make_store` is this module's, on PostgreSQL.
from tests.unit.observer.test_store import *  # noqa: F403
from tests.unit.observer.test_store_audit import *  # noqa: F403
from tests.unit.observer.test_store_console import *  # noqa: F403
from tests.unit.observer.test_store_usage import *  # noqa: F403

# These two never open a store: once, in the unit tier, is enough.
del test_open_store_picks_the_configured_backend, test_sqlite_uses_wal  # noqa: F821

pytestmark = pytest.mark.postgres


@pytest.fixture
def make_store(postgres_dsn: str) -> Callable[..., Store]:
    return postgres_stores(postgres_dsn)


@pytest.fixture
async def store(make_store: Callable[..., Store]) -> AsyncIterator[Store]:
    async with make_store() as opened:
        yield opened


async def test_postgres_partitions_are_daily_and_dropped(postgres_dsn: str) -> None:
    now = datetime.now(UTC)
    async with PostgresStore(postgres_dsn, 1, 2, reward_model=REWARDS, retention_days=30) as store:
        await store.insert_observations([make_obs(started=now - timedelta(days=40))])
        await store.maintain(now)
        conn = await asyncpg.connect(postgres_dsn, timeout=5)
        try:
            names = {
                r[0]
                for r in await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'observations'::regclass"
                )
            }
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
    expected = {f"observations_p{now.date() + timedelta(days=d):%Y%m%d}" for d in range(3)}
    assert names == expected
    assert versions == [m.version for m in POSTGRES_MIGRATIONS]


async def test_postgres_migration_packs_existing_feature_vectors(postgres_dsn: str) -> None:
    """A database at schema version 1 (real[] vectors) keeps its vectors, now packed float32 bytea."""
    first = POSTGRES_MIGRATIONS[0]
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    conn = await asyncpg.connect(postgres_dsn, timeout=5)
    try:
        await conn.execute(POSTGRES_MIGRATIONS_TABLE)
        for statement in first.statements:
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 1, first.name)
        await conn.execute(
            f"CREATE TABLE observations_p{day:%Y%m%d} PARTITION OF observations "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
        )
        await conn.execute(
            "INSERT INTO observations SELECT 'old-1', 'r', 'dec-old', 'acme', 'auto', 'small', 'local', 'p', "
            "0.5, '{1.0,-0.5,0.25,3.5e-8}'::real[], 'h', '', 1, 1, 0, 0, false, 0.01, 100, 10, 90, 1, '', "
            "'stop', 1, $1, NULL, 'adapters-1', NULL",
            now,
        )
        await conn.execute(
            "INSERT INTO reward_events (decision_id, tenant, route, model, policy, reward, quality, cost_usd, "
            "latency_ms, propensity, features, correction, previous_reward, previous_quality, at) VALUES "
            "('dec-old', 'acme', 'auto', 'small', 'p', 0.9, 1, 0.01, 100, 0.5, '{1.0,-0.5,0.25,3.5e-8}', "
            "false, 0, 0, $1), ('dec-empty', 'acme', 'auto', 'small', 'p', 1, 1, 0, 0, 1, '{}', false, 0, 0, $1)",
            now,
        )
    finally:
        await conn.close()
    async with PostgresStore(postgres_dsn, 1, 2, reward_model=REWARDS) as store:
        rewards = await all_rewards(store)
        stored = await store.list_observations("acme", 10, None)
    expected = list(array("f", [1.0, -0.5, 0.25, 3.5e-8]))  # what real[] held: float32 values
    assert [list(r.features) for r in rewards] == [expected, []]
    assert [o.observation_id for o in stored] == ["old-1"]
    conn = await asyncpg.connect(postgres_dsn, timeout=5)
    try:
        packed = await conn.fetchval("SELECT features FROM observations")
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert unpack_vector(packed) == expected and len(packed) == 16
    assert versions == [m.version for m in POSTGRES_MIGRATIONS]
