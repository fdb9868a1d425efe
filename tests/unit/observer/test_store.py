"""The observation store's contract, on SQLite in a temp dir (the same suite runs on PostgreSQL in integration)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiosqlite
import pytest

from atp.observer.v1 import observer_pb2
from atp_common.errors import ConfigError, InvalidArgument, PermissionDenied
from atp_observer.store import PostgresStore, SqliteStore, Store, open_store
from atp_observer.store.migrations import SQLITE_MIGRATIONS
from tests.support.observations import (
    CANCELLED,
    ERROR,
    PARTIAL,
    REWARDS,
    all_rewards,
    batch,
    feedback,
    make_obs,
)


async def test_resent_batch_is_stored_once(store: Store) -> None:
    batch = [make_obs(), make_obs(status=CANCELLED), make_obs(decision=False)]
    assert await store.insert_observations(batch) == (3, 0)
    assert await store.insert_observations(batch) == (0, 3)
    # A batch repeating an observation within itself, plus one new.
    fresh = make_obs()
    assert await store.insert_observations([fresh, batch[0], fresh]) == (1, 2)
    listed = await store.list_observations("acme", 100, None)
    assert sorted(o.observation_id for o in listed) == sorted(o.observation_id for o in [*batch, fresh])
    # Rewards only for the routed, not cancelled ones, each once.
    assert [e.decision_id for e in await all_rewards(store)] == [
        batch[0].decision.decision_id,
        fresh.decision.decision_id,
    ]
    assert await store.insert_observations([]) == (0, 0)


async def test_observation_round_trips_every_field(store: Store) -> None:
    obs = make_obs()
    await store.insert_observations([obs])
    (listed,) = await store.list_observations("acme", 10, None)
    assert listed == obs
    bare = make_obs(decision=False, tenant="bare")
    bare.ClearField("finished_at")
    await store.insert_observations([bare])
    assert await store.list_observations("bare", 10, None) == [bare]


async def test_an_observation_that_cannot_be_stored_is_left_out_alone(store: Store) -> None:
    good = make_obs()
    no_id = make_obs()
    no_id.observation_id = ""
    no_start = make_obs()
    no_start.ClearField("started_at")
    nan_cost, inf_cost, negative_cost = make_obs(), make_obs(), make_obs()
    nan_cost.cost_usd, inf_cost.cost_usd, negative_cost.cost_usd = math.nan, math.inf, -0.5
    nan_latency, inf_latency = make_obs(), make_obs()
    nan_latency.latency_ms, inf_latency.latency_ms = math.nan, -math.inf
    nan_propensity = make_obs()
    nan_propensity.decision.propensity = math.nan
    refused = [no_id, no_start, nan_cost, inf_cost, negative_cost, nan_latency, inf_latency, nan_propensity]
    # Neither stored nor duplicates: the good observation beside them is stored, its reward finite.
    assert await store.insert_observations([*refused, good]) == (1, 0)
    assert await store.list_observations("acme", 10, None) == [good]
    assert [(e.decision_id, e.reward) for e in await all_rewards(store)] == [
        (good.decision.decision_id, pytest.approx(0.8))
    ]


async def test_negative_token_counts_are_summed_as_none(store: Store) -> None:
    await store.insert_observations([make_obs(prompt_tokens=-7, completion_tokens=-3), make_obs()])
    (row,) = await store.query_usage("acme", None, None, ["tenant"])
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (2, 10, 5)


async def test_reward_uses_proxy_quality_and_route_weights(store: Store) -> None:
    ok = make_obs(cost_usd=0.01, latency_ms=200.0)
    truncated = make_obs(finish_reason="length", cost_usd=0.0, latency_ms=0.0)
    failed = make_obs(status=ERROR, cost_usd=0.0, latency_ms=1000.0)
    broken = make_obs(status=PARTIAL, cost_usd=0.0, latency_ms=0.0)
    unweighted = make_obs(route="other", cost_usd=5.0, latency_ms=9000.0)
    await store.insert_observations([ok, truncated, failed, broken, unweighted])
    events = {e.decision_id: e for e in await all_rewards(store)}
    first = events[ok.decision.decision_id]
    assert first.quality == 1.0
    assert first.reward == pytest.approx(1.0 - 10 * 0.01 - 0.5 * 0.2)
    assert (first.tenant, first.route, first.model, first.policy) == ("acme", "auto", "small", "thompson")
    assert (first.cost_usd, first.latency_ms, first.propensity) == (0.01, 200.0, 0.75)
    assert list(first.features) == [1.0, 0.5, 0.25]
    assert not first.correction
    assert abs(first.at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    assert events[truncated.decision.decision_id].quality == 0.5
    assert events[failed.decision.decision_id].reward == pytest.approx(-0.5)
    assert events[broken.decision.decision_id].quality == 0.0
    assert events[unweighted.decision.decision_id].reward == 1.0


async def test_feedback_after_observation_appends_corrections(store: Store) -> None:
    obs = make_obs(cost_usd=0.01, latency_ms=200.0)
    await store.insert_observations([obs])
    feedback_id, joined = await store.record_feedback(feedback(obs, 0.25))
    assert feedback_id and joined
    _, joined_again = await store.record_feedback(feedback(obs, 0.75))
    assert joined_again
    original, first, second = await all_rewards(store)
    assert original.cursor < first.cursor < second.cursor
    assert first.correction and second.correction
    assert first.quality == 0.25
    assert first.reward == pytest.approx(0.25 - 0.1 - 0.1)
    assert (first.previous_quality, first.previous_reward) == (original.quality, original.reward)
    assert (second.previous_quality, second.previous_reward) == (first.quality, first.reward)
    assert second.quality == 0.75
    assert list(second.features) == [1.0, 0.5, 0.25]
    assert (second.model, second.tenant, second.propensity) == ("small", "acme", 0.75)


async def test_feedback_before_observation_becomes_its_quality(store: Store) -> None:
    obs = make_obs()
    other = make_obs()
    _, joined = await store.record_feedback(feedback(obs, 0.25))
    assert not joined
    await store.record_feedback(feedback(obs, 0.5))
    # Feedback claiming another tenant's decision is kept but never joined to it.
    await store.record_feedback(feedback(other, 0.0, tenant="intruder"))
    await store.insert_observations([obs, other])
    events = {e.decision_id: e for e in await all_rewards(store)}
    assert len(events) == 2
    assert events[obs.decision.decision_id].quality == 0.5  # the latest feedback wins
    assert not events[obs.decision.decision_id].correction
    assert events[other.decision.decision_id].quality == 1.0


async def test_feedback_is_refused_across_tenants_and_out_of_range(store: Store) -> None:
    obs = make_obs()
    await store.insert_observations([obs])
    with pytest.raises(PermissionDenied):
        await store.record_feedback(feedback(obs, 0.5, tenant="intruder"))
    for score in (-0.1, 1.5, math.nan):
        with pytest.raises(InvalidArgument):
            await store.record_feedback(feedback(obs, score))
    with pytest.raises(InvalidArgument):
        await store.record_feedback(observer_pb2.RecordFeedbackRequest(tenant="acme", score=0.5))
    assert len(await all_rewards(store)) == 1
    # Feedback on a stored observation that earns no reward joins but appends nothing.
    cancelled = make_obs(status=CANCELLED)
    await store.insert_observations([cancelled])
    assert (await store.record_feedback(feedback(cancelled, 1.0)))[1]
    assert len(await all_rewards(store)) == 1


async def test_cursor_orders_events_and_resumes(store: Store) -> None:
    for _ in range(5):
        await store.insert_observations([make_obs() for _ in range(5)])
    everything = await all_rewards(store)
    cursors = [e.cursor for e in everything]
    assert len(cursors) == 25 and cursors == sorted(set(cursors)) and cursors[0] > 0
    pages, cursor = [], 0
    while page := await store.rewards_after(cursor, 7):
        assert len(page) <= 7
        pages.extend(page)
        cursor = page[-1].cursor
    assert pages == everything
    assert await store.rewards_after(cursors[-1], 10) == []
    assert [e.cursor for e in await store.rewards_after(cursors[9], 3)] == cursors[10:13]
    with pytest.raises(InvalidArgument):
        await store.rewards_after(0, 0)


async def test_list_observations_is_tenant_scoped_newest_first(store: Store) -> None:
    now = datetime.now(UTC)
    mine = [make_obs(tenant="acme", started=now - timedelta(minutes=m)) for m in (30, 10, 20)]
    theirs = [make_obs(tenant="globex", started=now - timedelta(minutes=m)) for m in (5, 15)]
    await store.insert_observations([*mine, *theirs])
    listed = await store.list_observations("acme", 10, None)
    assert [o.observation_id for o in listed] == [
        mine[1].observation_id,
        mine[2].observation_id,
        mine[0].observation_id,
    ]
    assert {o.tenant for o in await store.list_observations("globex", 10, None)} == {"globex"}
    assert await store.list_observations("nobody", 10, None) == []
    assert [o.observation_id for o in await store.list_observations("acme", 1, None)] == [
        mine[1].observation_id
    ]
    older = await store.list_observations("acme", 10, now - timedelta(minutes=10))
    assert [o.observation_id for o in older] == [mine[2].observation_id, mine[0].observation_id]
    with pytest.raises(InvalidArgument):
        await store.list_observations("", 10, None)


async def test_query_usage_aggregates(store: Store) -> None:
    now = datetime.now(UTC)
    await store.insert_observations(
        [
            make_obs(
                tenant="acme", model="small", cost_usd=0.5, latency_ms=100.0, started=now - timedelta(hours=1)
            ),
            make_obs(tenant="acme", model="small", cost_usd=0.25, latency_ms=300.0, status=ERROR),
            make_obs(tenant="acme", model="large", cost_usd=1.0, latency_ms=50.0, status=PARTIAL),
            make_obs(tenant="acme", route="", model="large", decision=False, cost_usd=2.0, latency_ms=10.0),
            make_obs(tenant="globex", model="small", cost_usd=4.0, latency_ms=1000.0, prompt_tokens=100),
            make_obs(tenant="globex", model="small", started=now - timedelta(days=3), cost_usd=8.0),
        ]
    )
    recent = now - timedelta(days=1)
    by_model = await store.query_usage("acme", recent, None, ["model"])
    assert [(r.tenant, r.route, r.model) for r in by_model] == [("", "", "large"), ("", "", "small")]
    large, small = by_model
    assert (large.requests, large.errors, large.prompt_tokens, large.completion_tokens) == (2, 1, 20, 10)
    assert large.cost_usd == pytest.approx(3.0)
    assert large.mean_latency_ms == pytest.approx(30.0)
    assert (small.requests, small.errors) == (2, 1)
    assert small.cost_usd == pytest.approx(0.75)
    assert small.mean_latency_ms == pytest.approx(200.0)

    everyone = await store.query_usage("", recent, None, ["model", "tenant", "route"])
    assert [(r.tenant, r.route, r.model, r.requests) for r in everyone] == [
        ("acme", "", "large", 1),
        ("acme", "auto", "large", 1),
        ("acme", "auto", "small", 2),
        ("globex", "auto", "small", 1),
    ]
    (total,) = await store.query_usage("", None, None, [])
    assert (total.requests, total.errors, total.prompt_tokens) == (6, 2, 150)
    assert total.cost_usd == pytest.approx(15.75)
    (window,) = await store.query_usage(
        "globex", now - timedelta(days=4), now - timedelta(days=2), ["tenant"]
    )
    assert (window.tenant, window.requests, window.cost_usd) == ("globex", 1, 8.0)
    assert await store.query_usage("nobody", None, None, []) == []
    with pytest.raises(InvalidArgument):
        await store.query_usage("acme", None, None, ["provider"])


async def test_arm_stats_replace_corrected_rewards(store: Store) -> None:
    a1 = make_obs(tenant="acme", model="small", cost_usd=0.0, latency_ms=0.0)
    a2 = make_obs(tenant="acme", model="small", cost_usd=0.1, latency_ms=0.0, status=ERROR)
    g1 = make_obs(tenant="globex", model="small", cost_usd=0.0, latency_ms=2000.0)
    big = make_obs(tenant="acme", model="large", cost_usd=0.0, latency_ms=0.0, finish_reason="length")
    elsewhere = make_obs(route="other", model="small", cost_usd=0.0, latency_ms=0.0)
    await store.insert_observations([a1, a2, g1, big, elsewhere])
    await store.record_feedback(feedback(a1, 0.5))
    await store.record_feedback(feedback(a1, 0.25))

    arms, cursor = await store.arm_stats("auto")
    assert cursor == (await all_rewards(store))[-1].cursor
    by_key = {(a.route, a.model, a.tenant): a for a in arms}
    assert list(by_key) == [
        ("auto", "large", ""),
        ("auto", "large", "acme"),
        ("auto", "small", ""),
        ("auto", "small", "acme"),
        ("auto", "small", "globex"),
    ]
    # small, acme: a1 corrected to quality 0.25 (reward 0.25), a2 failed (reward 0 - 10 * 0.1 = -1).
    acme_small = by_key[("auto", "small", "acme")]
    assert acme_small.pulls == 2
    assert acme_small.reward_sum == pytest.approx(0.25 - 1.0)
    assert acme_small.reward_sq_sum == pytest.approx(0.25**2 + 1.0)
    assert acme_small.quality_sum == pytest.approx(0.25)
    assert acme_small.cost_sum == pytest.approx(0.1)
    # small overall adds g1: quality 1, latency 2 s -> reward 0.
    small = by_key[("auto", "small", "")]
    assert small.pulls == 3
    assert small.reward_sum == pytest.approx(0.25 - 1.0 + 0.0)
    assert small.quality_sum == pytest.approx(1.25)
    assert small.latency_sum == pytest.approx(2000.0)
    assert by_key[("auto", "large", "")].quality_sum == pytest.approx(0.5)

    all_arms, same_cursor = await store.arm_stats("")
    assert same_cursor == cursor
    assert {(a.route, a.model, a.tenant) for a in all_arms} == {
        *by_key,
        ("other", "small", ""),
        ("other", "small", "acme"),
    }


async def test_get_decision(store: Store) -> None:
    obs = make_obs()
    await store.insert_observations([obs, make_obs(decision=False)])
    found = await store.get_decision(obs.decision.decision_id)
    assert found is not None
    assert found.decision == obs.decision
    assert (found.tenant, found.replica_id) == ("acme", "adapters-1")
    assert found.decided_at == obs.started_at
    assert await store.get_decision("dec-unknown") is None
    assert await store.get_decision("") is None


async def test_retention_deletes_old_rows(make_store: Callable[..., Store]) -> None:
    now = datetime.now(UTC)
    async with make_store(retention_days=30) as store:
        old = make_obs(started=now - timedelta(days=40))
        new = make_obs(started=now - timedelta(hours=1))
        assert await store.insert_observations([old, new]) == (2, 0)
        await store.record_feedback(feedback(new, 0.5))
        await store.maintain(now)
        assert [o.observation_id for o in await store.list_observations("acme", 10, None)] == [
            new.observation_id
        ]
        assert await store.get_decision(old.decision.decision_id) is None
        assert len(await all_rewards(store)) == 3  # events are as old as their making, which is now
        # A resent old observation is stored again (its partition is recreated on demand), then aged out.
        assert await store.insert_observations([old]) == (1, 0)
        await store.maintain(now + timedelta(days=31))
        assert await store.list_observations("acme", 10, None) == []
        assert await all_rewards(store) == []
        # The cursor keeps increasing after everything was deleted.
        before = (await store.arm_stats(""))[1]
        assert before == 0
        await store.insert_observations([make_obs(started=now)])
        (event,) = await all_rewards(store)
        assert event.cursor > 4


async def test_reopening_keeps_data_and_schema(make_store: Callable[..., Store]) -> None:
    obs = make_obs()
    async with make_store() as store:
        await store.insert_observations([obs])
    async with make_store() as store:
        assert await store.insert_observations([obs]) == (0, 1)
        assert len(await all_rewards(store)) == 1
        await store.ping()


async def test_concurrent_batches_neither_lose_nor_duplicate_cursors(store: Store) -> None:
    writers, batches, size = 6, 5, 30
    done = asyncio.Event()
    seen: list[observer_pb2.RewardEvent] = []

    async def write(writer: int) -> None:
        for _ in range(batches):
            await store.insert_observations([make_obs(tenant=f"t{writer}") for _ in range(size)])

    async def feedback_writer(observations: list[observer_pb2.Observation]) -> None:
        for obs in observations:
            await store.record_feedback(feedback(obs, 0.5))

    async def watch() -> None:
        # A reader resuming from the last cursor it saw, as WatchRewards does, while writers commit.
        cursor = 0
        while True:
            finished = done.is_set()
            page = await store.rewards_after(cursor, 50)
            seen.extend(page)
            if page:
                cursor = page[-1].cursor
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    early = [make_obs(tenant="fb") for _ in range(20)]
    await store.insert_observations(early)
    watcher = asyncio.create_task(watch())
    async with asyncio.timeout(60):
        await asyncio.gather(*(write(w) for w in range(writers)), feedback_writer(early))
        done.set()
        await watcher
    expected = writers * batches * size + 2 * len(early)
    cursors = [e.cursor for e in seen]
    assert len(cursors) == expected
    assert cursors == sorted(set(cursors))
    assert seen == await all_rewards(store)
    corrections = [e for e in seen if e.correction]
    assert len(corrections) == len(early)


async def test_open_store_picks_the_configured_backend(tmp_path) -> None:
    sqlite_store = open_store("", tmp_path / "a.sqlite3", reward_model=REWARDS, retention_days=7)
    assert isinstance(sqlite_store, SqliteStore)
    assert sqlite_store.retention_days == 7
    pg_store = open_store("postgresql://u@127.0.0.1:1/db", "", reward_model=REWARDS, pool_min=2, pool_max=3)
    assert isinstance(pg_store, PostgresStore)
    with pytest.raises(ConfigError):
        open_store("mysql://u@host/db", "", reward_model=REWARDS)


async def test_sqlite_uses_wal(tmp_path) -> None:
    path = tmp_path / "nested" / "observer.sqlite3"
    async with SqliteStore(path, reward_model=REWARDS) as store:
        await store.ping()
    async with aiosqlite.connect(path) as conn:
        rows = await conn.execute_fetchall("PRAGMA journal_mode")
        versions = await conn.execute_fetchall("SELECT version FROM schema_migrations")
    assert list(rows) == [("wal",)]
    assert list(versions) == [(m.version,) for m in SQLITE_MIGRATIONS]


async def test_paging_keys_on_start_and_id_so_equal_timestamps_lose_none(store: Store) -> None:
    same = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=3)
    tied = [make_obs(started=same) for _ in range(5)]
    earlier = make_obs(started=same - timedelta(microseconds=1))
    await store.insert_observations([*tied, earlier, make_obs(tenant="globex", started=same)])
    expected = [o.observation_id for o in sorted(tied, key=lambda o: o.observation_id, reverse=True)]
    expected.append(earlier.observation_id)

    pages: list[list[str]] = []
    before, before_id = None, ""
    while page := await store.list_observations("acme", 2, before, before_id):
        pages.append([o.observation_id for o in page])
        before, before_id = page[-1].started_at.ToDatetime(tzinfo=UTC), page[-1].observation_id
    # Pages of two cut through the five observations that share started_at; none is lost or repeated.
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [oid for page in pages for oid in page] == expected
    # Without the id, `before` alone still means "started strictly earlier".
    assert [o.observation_id for o in await store.list_observations("acme", 10, same)] == [
        earlier.observation_id
    ]
    with pytest.raises(InvalidArgument):
        await store.list_observations("acme", 10, None, tied[0].observation_id)


async def test_batches_written_together_count_each_batch_and_reward_each_observation_once(
    store: Store,
) -> None:
    a, b, c = make_obs(), make_obs(), make_obs(status=CANCELLED)
    assert await store.insert_batches([batch(a, b), batch(b, c), batch(a)]) == [(2, 0), (1, 1), (0, 1)]
    assert await store.insert_batches([batch(c), batch(a, b)]) == [(0, 1), (0, 2)]
    assert await store.insert_batches([]) == []
    rewards = await all_rewards(store)
    # The cancelled observation earns none; the others one each, in batch order, with their features.
    assert [r.decision_id for r in rewards] == [a.decision.decision_id, b.decision.decision_id]
    assert [list(r.features) for r in rewards] == [[1.0, 0.5, 0.25]] * 2
    # A bad observation is left out alone, whichever batch it is in.
    results = await store.insert_batches(
        [batch(make_obs()), batch(observer_pb2.Observation(observation_id="no-start"))]
    )
    assert results == [(1, 0), (0, 0)]
    assert len(await all_rewards(store)) == 3
