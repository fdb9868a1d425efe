"""PostgreSQL's reward log: ordered by transaction id without a writers' lock, and the move from reward_events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from atp.observer.v1 import observer_pb2
from atp_observer.store import PostgresStore
from atp_observer.store.layout import LEGACY_COLUMNS, pack_vector
from atp_observer.store.migrations import POSTGRES_MIGRATIONS
from atp_observer.store.pg_session import migrate
from atp_observer.store.reward_log import CURSOR_POSITION_BITS
from tests.support.legacy_rows import legacy_values
from tests.support.observations import REWARDS, all_rewards, feedback, make_obs

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_dsn, 1, 4, reward_model=REWARDS) as opened:
        yield opened


async def test_a_writer_still_running_holds_back_the_events_committed_after_it(
    store: PostgresStore, postgres_dsn: str
) -> None:
    slow = await asyncpg.connect(postgres_dsn, timeout=5)
    try:
        # A writer that drew its transaction id first and commits last, as a slow ingest would.
        await slow.execute("BEGIN")
        slow_xid = await slow.fetchval("SELECT pg_current_xact_id()::text::bigint")
        fast = make_obs()
        await store.insert_observations([fast])
        assert await all_rewards(store) == []
        # Arm statistics as of the cursor they return: the fast event is not below the horizon yet, so it
        # is not counted, and a watcher starting from cursor 0 will receive it exactly once.
        arms, cursor = await store.arm_stats("")
        assert (arms, cursor) == ([], 0)

        packed = orjson.dumps(
            [
                ["dec-slow"],
                ["acme"],
                ["auto"],
                ["small"],
                ["thompson"],
                [0.5],
                [1.0],
                [0.0],
                [0.0],
                [1.0],
                [pack_vector([1.0]).hex()],
            ]
        )
        await slow.execute(
            "INSERT INTO reward_log (xid, event_count, events, at) VALUES (pg_current_xact_id(), 1, $1, now())",
            packed,
        )
        await slow.execute("COMMIT")
    finally:
        await slow.close()
    events = await all_rewards(store)
    assert [e.decision_id for e in events] == ["dec-slow", fast.decision.decision_id]
    assert events[0].cursor == slow_xid << CURSOR_POSITION_BITS
    assert events[0].cursor < events[1].cursor
    assert list(events[0].features) == [1.0]
    assert (await store.arm_stats(""))[1] == events[1].cursor


async def test_feedback_racing_the_ingest_of_its_decision_is_never_lost(store: PostgresStore) -> None:
    observations = [make_obs(cost_usd=0.0, latency_ms=0.0) for _ in range(150)]
    rng = random.Random(7)

    async def ingest(obs: observer_pb2.Observation) -> None:
        await asyncio.sleep(rng.random() * 0.01)
        await store.insert_observations([obs])

    async def rate(obs: observer_pb2.Observation) -> None:
        await asyncio.sleep(rng.random() * 0.01)
        await store.record_feedback(feedback(obs, 0.3))

    async with asyncio.timeout(60):
        await asyncio.gather(*(job(obs) for obs in observations for job in (ingest, rate)))
    events = await all_rewards(store)
    for obs in observations:
        mine = [e for e in events if e.decision_id == obs.decision.decision_id]
        originals = [e for e in mine if not e.correction]
        assert len(originals) == 1, mine
        # Whichever came first, the decision's latest reward has the feedback's quality, and a correction
        # comes after the original it replaces.
        assert mine[-1].quality == pytest.approx(0.3)
        assert all(e.correction and e.cursor > originals[0].cursor for e in mine[1:])
        if mine[0].quality == pytest.approx(0.3):
            assert len(mine) == 1  # the feedback was there first: no correction needed
    arms, cursor = await store.arm_stats("auto")
    (small,) = [a for a in arms if not a.tenant]
    assert (small.pulls, small.quality_sum) == (150, pytest.approx(150 * 0.3))
    assert cursor == events[-1].cursor


async def _schema_at_version_2(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await migrate(conn, POSTGRES_MIGRATIONS[:2])
    finally:
        await conn.close()


async def test_moving_reward_events_keeps_cursors_rewards_and_orphans(postgres_dsn: str) -> None:
    await _schema_at_version_2(postgres_dsn)
    now = datetime.now(UTC)
    rated, plain = make_obs(cost_usd=0.0, latency_ms=0.0), make_obs(cost_usd=0.0, latency_ms=0.0)
    early = make_obs(cost_usd=0.0, latency_ms=0.0)  # its feedback came, its observation not yet
    conn = await asyncpg.connect(postgres_dsn, timeout=5)
    try:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        for start in (day, day + timedelta(days=1)):
            await conn.execute(
                f'CREATE TABLE "observations_p{start:%Y%m%d}" PARTITION OF observations '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
            )
        # The columns of version 2 (trace_id came with version 3).
        columns = LEGACY_COLUMNS[: LEGACY_COLUMNS.index("trace_id")]
        rows = [legacy_values(obs)[: len(columns)] for obs in (rated, plain)]
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.copy_records_to_table(
            "observations",
            records=[
                (
                    *row[:25],
                    datetime.fromtimestamp(row[25] / 1e6, UTC),
                    datetime.fromtimestamp(row[26] / 1e6, UTC),
                    *row[27:],
                )
                for row in rows
            ],
            columns=columns,
        )
        legacy = [
            # cursor, decision, reward, quality, correction, previous reward, previous quality
            (3, rated, 1.0, 1.0, False, 0.0, 0.0),
            (8, plain, 1.0, 1.0, False, 0.0, 0.0),
            (12, rated, 0.25, 0.25, True, 1.0, 1.0),
        ]
        for cursor, obs, reward, quality, correction, prev_reward, prev_quality in legacy:
            await conn.execute(
                "INSERT INTO reward_events (cursor, decision_id, tenant, route, model, policy, reward, quality, "
                "cost_usd, latency_ms, propensity, features, correction, previous_reward, previous_quality, at) "
                "VALUES ($1, $2, 'acme', 'auto', 'small', 'thompson', $3, $4, 0, 0, 0.75, $5, $6, $7, $8, now())",
                cursor,
                obs.decision.decision_id,
                reward,
                quality,
                pack_vector([1.0, 0.5, 0.25]),
                correction,
                prev_reward,
                prev_quality,
            )
        for obs, score in ((rated, 0.25), (early, 0.5)):
            await conn.execute(
                "INSERT INTO feedback (feedback_id, decision_id, tenant, score, label, comment, source, created_at) "
                "VALUES ($1, $2, 'acme', $3, '', '', 'test', now())",
                f"fb-{obs.decision.decision_id}",
                obs.decision.decision_id,
                score,
            )
    finally:
        await conn.close()

    async with PostgresStore(postgres_dsn, 1, 2, reward_model=REWARDS) as store:
        moved = await all_rewards(store)
        assert [(e.cursor, e.decision_id, e.correction) for e in moved] == [
            (3, rated.decision.decision_id, False),
            (8, plain.decision.decision_id, False),
            (12, rated.decision.decision_id, True),
        ]
        assert (moved[2].reward, moved[2].previous_reward, list(moved[2].features)) == (
            0.25,
            1.0,
            [1.0, 0.5, 0.25],
        )
        assert [e.cursor for e in await store.rewards_after(3, 10)] == [8, 12]
        arms, cursor = await store.arm_stats("auto")
        assert cursor == 12
        (small,) = [a for a in arms if not a.tenant]
        assert (small.pulls, small.reward_sum) == (2, pytest.approx(1.25))

        # New events follow the moved ones; the orphan feedback becomes the late observation's quality, and
        # new feedback on a moved decision corrects its latest reward.
        await store.insert_observations([early])
        await store.record_feedback(feedback(rated, 0.75))
        first_new, correction = await store.rewards_after(12, 10)
        assert first_new.cursor > 12 and (first_new.decision_id, first_new.quality) == (
            early.decision.decision_id,
            0.5,
        )
        assert (correction.previous_reward, correction.quality) == (0.25, 0.75)
        assert (await store.arm_stats("auto"))[1] == correction.cursor
