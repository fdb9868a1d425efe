"""Rows stored before the payload column are still read, joined and summed beside the new ones."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from atp.observer.v1 import observer_pb2
from atp_observer.store import PostgresStore, SqliteStore, Store
from atp_observer.store.layout import EPOCH, LEGACY_COLUMNS
from atp_observer.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, SQLITE_MIGRATIONS_TABLE
from atp_observer.store.pg_session import migrate
from tests.support.legacy_rows import legacy_values
from tests.support.observations import REWARDS, feedback, make_obs

# The previous schema's quality and reward of the legacy row (PostgreSQL keeps them on the row).
LEGACY_QUALITY = 1.0


async def _postgres_with_legacy_row(dsn: str, obs: observer_pb2.Observation) -> Store:
    """A PostgreSQL schema at version 3 holding `obs` as that version stored it."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await migrate(conn, POSTGRES_MIGRATIONS[:3])
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        for start in (day, day + timedelta(days=1)):
            await conn.execute(
                f'CREATE TABLE "observations_p{start:%Y%m%d}" PARTITION OF observations '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
            )
        row = list(legacy_values(obs))
        for i in (25, 26):
            row[i] = EPOCH + timedelta(microseconds=row[i])
        reward = REWARDS.reward("auto", LEGACY_QUALITY, obs.cost_usd, obs.latency_ms)
        await conn.copy_records_to_table(
            "observations",
            records=[(*row, reward, LEGACY_QUALITY)],
            columns=(*LEGACY_COLUMNS, "reward", "quality"),
        )
    finally:
        await conn.close()
    return PostgresStore(dsn, 1, 2, reward_model=REWARDS)


async def _sqlite_with_legacy_row(path: Path, obs: observer_pb2.Observation) -> Store:
    """A SQLite file at schema version 2 holding `obs` as that version stored it."""
    with sqlite3.connect(path) as conn:
        conn.execute(SQLITE_MIGRATIONS_TABLE)
        for migration in SQLITE_MIGRATIONS[:2]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
        conn.execute(
            f"INSERT INTO observations ({', '.join(LEGACY_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(LEGACY_COLUMNS))})",
            legacy_values(obs),
        )
    conn.close()
    return SqliteStore(path, reward_model=REWARDS)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def with_legacy_row(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[observer_pb2.Observation], Awaitable[Store]]:
    """Builds an unopened store of the backend under test whose database holds one row of the old format."""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        return lambda obs: _postgres_with_legacy_row(dsn, obs)
    return lambda obs: _sqlite_with_legacy_row(tmp_path / "observer.sqlite3", obs)


async def test_old_rows_read_beside_new_ones(
    with_legacy_row: Callable[[observer_pb2.Observation], Awaitable[Store]],
) -> None:
    now = datetime.now(UTC)
    old = make_obs(started=now - timedelta(minutes=10), prompt_tokens=7)
    new = make_obs(started=now - timedelta(minutes=5), prompt_tokens=11)
    async with await with_legacy_row(old) as store:
        assert (await store.insert_observations([new])) == (1, 0)

        # Every field comes back, from the old row's columns and from the new row's payload alike.
        assert await store.list_observations("acme", 10, None) == [new, old]
        for obs in (old, new):
            found = await store.get_decision(obs.decision.decision_id)
            assert found is not None
            assert (found.decision, found.tenant, found.replica_id) == (obs.decision, "acme", "adapters-1")
            assert found.decided_at == obs.started_at

        (usage,) = await store.query_usage("acme", None, None, ["tenant"])
        assert (usage.requests, usage.prompt_tokens) == (2, 18)

        # Feedback finds its decision in the old row, and is refused to another tenant.
        assert (await store.record_feedback(feedback(old, 0.5)))[1] is True
        with pytest.raises(Exception, match="another tenant"):
            await store.record_feedback(feedback(old, 0.5, tenant="globex"))


@pytest.mark.postgres
async def test_postgres_corrects_an_old_rows_reward_from_its_columns(postgres_dsn: str) -> None:
    old = make_obs(started=datetime.now(UTC) - timedelta(minutes=10))
    async with await _postgres_with_legacy_row(postgres_dsn, old) as store:
        await store.record_feedback(feedback(old, 0.25))
        (correction,) = await store.rewards_after(0, 10)
        assert correction.correction and correction.decision_id == old.decision.decision_id
        assert (correction.quality, correction.previous_quality) == (0.25, LEGACY_QUALITY)
        assert list(correction.features) == [1.0, 0.5, 0.25]
        assert (correction.model, correction.policy, correction.propensity) == ("small", "thompson", 0.75)
