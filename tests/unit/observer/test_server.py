"""The observer's gRPC server on SQLite: ingest, usage, feedback, the reward stream, isolation and outages."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.server import RunningServer
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings
from atp_observer.store import RewardModel, SqliteStore

OK = observer_pb2.OBSERVATION_STATUS_OK
ERROR = observer_pb2.OBSERVATION_STATUS_ERROR
TIMEOUT = 10.0


def observation(
    tenant: str,
    n: int,
    *,
    model: str = "local-small",
    route: str = "auto",
    status: int = OK,
    cost: float = 0.001,
    decision_id: str | None = None,
) -> observer_pb2.Observation:
    """A completed request of `tenant`, numbered `n`."""
    decision_id = decision_id or f"d-{tenant}-{n}"
    obs = observer_pb2.Observation(
        observation_id=f"o-{tenant}-{n}",
        request_id=f"r-{tenant}-{n}",
        tenant=tenant,
        decision=chat_pb2.Decision(
            decision_id=decision_id,
            route=route,
            policy="static",
            propensity=1.0,
            candidates=[chat_pb2.RankedCandidate(model=model, provider="local", score=1.0)],
            features=chat_pb2.RequestFeatures(estimated_prompt_tokens=10, vector=[1.0, 0.5]),
        ),
        model=model,
        provider="local",
        usage=chat_pb2.Usage(prompt_tokens=10, completion_tokens=5),
        cost_usd=cost,
        latency_ms=100.0,
        status=status,
        finish_reason="stop" if status == OK else "",
        replica_id="adapters-test",
    )
    obs.started_at.GetCurrentTime()
    obs.finished_at.GetCurrentTime()
    return obs


def settings_for(tmp_path: Path, **overrides: object) -> ObserverSettings:
    values: dict[str, object] = {
        "port": 0,
        "metrics_port": None,
        "sqlite_path": str(tmp_path / "observer.sqlite3"),
        "drain_delay_s": 0.1,
        "grace_s": 2.0,
        "rewards_poll_s": 30.0,  # Longer than any test: wake-ups must come from the in-process event.
    }
    values.update(overrides)
    return ObserverSettings(**values)  # type: ignore[arg-type]


class Observer:
    """A running observer and a stub on a real channel to it."""

    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.channel = open_channel(running.address)
        self.stub = observer_pb2_grpc.ObserverServiceStub(self.channel)

    async def ingest(self, *batches: list[observer_pb2.Observation]) -> observer_pb2.IngestResponse:
        async def requests() -> AsyncIterator[observer_pb2.IngestRequest]:
            for batch in batches:
                yield observer_pb2.IngestRequest(observations=batch)

        return await self.stub.Ingest(requests(), timeout=TIMEOUT)

    async def close(self) -> None:
        await self.channel.close()
        if not self.running.draining:
            await self.running.stop_now()


@pytest.fixture
async def observer(tmp_path: Path) -> AsyncIterator[Observer]:
    running = await build_server(settings_for(tmp_path), config=builtin_config(""))
    client = Observer(running)
    yield client
    await client.close()


async def test_ingest_is_stored_and_counted_by_query_usage(observer: Observer) -> None:
    first = [observation("acme", i, cost=0.002) for i in range(3)]
    second = [observation("acme", 3, model="local-large", status=ERROR, cost=0.01)]
    second.append(observation("globex", 0))
    reply = await observer.ingest(first, second)
    assert (reply.stored, reply.duplicates) == (5, 0)

    usage = await observer.stub.QueryUsage(
        observer_pb2.QueryUsageRequest(tenant="acme", group_by=["model"]), timeout=TIMEOUT
    )
    by_model = {row.model: row for row in usage.rows}
    assert set(by_model) == {"local-small", "local-large"}
    small, large = by_model["local-small"], by_model["local-large"]
    assert (small.requests, small.errors, small.prompt_tokens, small.completion_tokens) == (3, 0, 30, 15)
    assert small.cost_usd == pytest.approx(0.006)
    assert (large.requests, large.errors) == (1, 1)
    assert large.cost_usd == pytest.approx(0.01)
    assert all(row.tenant == "" for row in usage.rows)  # not grouped by tenant

    everyone = await observer.stub.QueryUsage(
        observer_pb2.QueryUsageRequest(group_by=["tenant"]), timeout=TIMEOUT
    )
    assert {(row.tenant, row.requests) for row in everyone.rows} == {("acme", 4), ("globex", 1)}


async def test_resent_batches_are_stored_once(observer: Observer) -> None:
    batch = [observation("acme", i) for i in range(4)]
    assert (await observer.ingest(batch)).stored == 4
    # A shipper that never saw the acknowledgement sends the same batch again, plus one new observation.
    again = await observer.ingest(batch, [observation("acme", 4)])
    assert (again.stored, again.duplicates) == (1, 4)
    usage = await observer.stub.QueryUsage(observer_pb2.QueryUsageRequest(tenant="acme"), timeout=TIMEOUT)
    assert [row.requests for row in usage.rows] == [5]
    rewards = await _collect_rewards(observer, cursor=0, count=5)
    assert len({event.decision_id for event in rewards}) == 5


async def _collect_rewards(
    observer: Observer, *, cursor: int, count: int, max_batch: int = 0
) -> list[observer_pb2.RewardEvent]:
    """Read `count` events from `cursor` on one WatchRewards stream, then close it."""
    events: list[observer_pb2.RewardEvent] = []
    call = observer.stub.WatchRewards(
        observer_pb2.WatchRewardsRequest(cursor=cursor, max_batch=max_batch), timeout=TIMEOUT
    )
    try:
        async for response in call:
            if max_batch:
                assert len(response.events) <= max_batch
            events.extend(response.events)
            if len(events) >= count:
                break
    finally:
        call.cancel()
    return events


async def test_feedback_joins_before_and_after_the_observation(observer: Observer) -> None:
    # Feedback first: nothing to join yet; the observation's reward then uses the score.
    early = await observer.stub.RecordFeedback(
        observer_pb2.RecordFeedbackRequest(decision_id="d-acme-0", tenant="acme", score=0.25),
        timeout=TIMEOUT,
    )
    assert not early.joined and early.feedback_id
    await observer.ingest([observation("acme", 0), observation("acme", 1)])
    events = await _collect_rewards(observer, cursor=0, count=2)
    by_decision = {event.decision_id: event for event in events}
    assert by_decision["d-acme-0"].quality == pytest.approx(0.25)
    assert by_decision["d-acme-1"].quality == pytest.approx(1.0)  # proxy: a successful stop

    # Feedback after: joined, and a correction event follows on the stream.
    late = await observer.stub.RecordFeedback(
        observer_pb2.RecordFeedbackRequest(decision_id="d-acme-1", tenant="acme", score=0.0), timeout=TIMEOUT
    )
    assert late.joined
    (correction,) = await _collect_rewards(observer, cursor=events[-1].cursor, count=1)
    assert correction.decision_id == "d-acme-1" and correction.correction
    assert correction.quality == 0.0 and correction.previous_quality == pytest.approx(1.0)

    # Another tenant cannot score acme's decision.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await observer.stub.RecordFeedback(
            observer_pb2.RecordFeedbackRequest(decision_id="d-acme-1", tenant="globex", score=1.0),
            timeout=TIMEOUT,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_watch_rewards_pages_resumes_from_a_cursor_and_wakes_on_ingest(observer: Observer) -> None:
    await observer.ingest([observation("acme", i) for i in range(7)])
    first = await _collect_rewards(observer, cursor=0, count=3, max_batch=3)
    assert [e.cursor for e in first] == sorted(e.cursor for e in first)
    resume_at = first[2].cursor
    rest = await _collect_rewards(observer, cursor=resume_at, count=4, max_batch=3)
    assert all(event.cursor > resume_at for event in rest)
    seen = [e.decision_id for e in first[:3]] + [e.decision_id for e in rest]
    assert sorted(seen) == sorted(f"d-acme-{i}" for i in range(7))

    # A watcher at the head gets new events as soon as they commit (the poll is 30 s here).
    head = rest[-1].cursor
    call = observer.stub.WatchRewards(observer_pb2.WatchRewardsRequest(cursor=head), timeout=TIMEOUT)
    try:
        reader = asyncio.ensure_future(call.read())
        await asyncio.sleep(0)  # let the stream open before the write, so it starts waiting at the head
        started = time.monotonic()
        await observer.ingest([observation("acme", 100)])
        response = await asyncio.wait_for(reader, 5.0)
        assert time.monotonic() - started < 5.0
        assert [e.decision_id for e in response.events] == ["d-acme-100"]
    finally:
        call.cancel()


async def test_list_observations_is_tenant_scoped(observer: Observer) -> None:
    await observer.ingest(
        [observation("acme", i) for i in range(3)] + [observation("globex", i) for i in range(2)]
    )
    acme = await observer.stub.ListObservations(
        observer_pb2.ListObservationsRequest(tenant="acme", limit=10), timeout=TIMEOUT
    )
    assert sorted(o.observation_id for o in acme.observations) == [f"o-acme-{i}" for i in range(3)]
    assert {o.tenant for o in acme.observations} == {"acme"}
    globex = await observer.stub.ListObservations(
        observer_pb2.ListObservationsRequest(tenant="globex"), timeout=TIMEOUT
    )
    assert {o.tenant for o in globex.observations} == {"globex"} and len(globex.observations) == 2
    nobody = await observer.stub.ListObservations(
        observer_pb2.ListObservationsRequest(tenant="initech"), timeout=TIMEOUT
    )
    assert list(nobody.observations) == []
    limited = await observer.stub.ListObservations(
        observer_pb2.ListObservationsRequest(tenant="acme", limit=2), timeout=TIMEOUT
    )
    assert len(limited.observations) == 2


async def test_list_observations_pages_through_equal_start_times(observer: Observer) -> None:
    tied = [observation("acme", i) for i in range(3)]
    for obs in tied:
        obs.started_at.CopyFrom(tied[0].started_at)
    await observer.ingest(tied)
    seen: list[str] = []
    request = observer_pb2.ListObservationsRequest(tenant="acme", limit=2)
    while page := (await observer.stub.ListObservations(request, timeout=TIMEOUT)).observations:
        seen += [o.observation_id for o in page]
        request.before.CopyFrom(page[-1].started_at)
        request.before_observation_id = page[-1].observation_id
    assert seen == [f"o-acme-{i}" for i in (2, 1, 0)]
    orphan = observer_pb2.ListObservationsRequest(tenant="acme", before_observation_id="o-acme-1")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await observer.stub.ListObservations(orphan, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_arm_stats_and_recorded_decisions(observer: Observer) -> None:
    await observer.ingest(
        [
            observation("acme", 0),
            observation("acme", 1, status=ERROR),
            observation("acme", 2, model="local-large"),
        ]
    )
    stats = await observer.stub.GetArmStats(observer_pb2.GetArmStatsRequest(route="auto"), timeout=TIMEOUT)
    global_arms = {arm.model: arm for arm in stats.arms if not arm.tenant}
    assert global_arms["local-small"].pulls == 2 and global_arms["local-small"].reward_sum == pytest.approx(
        1.0
    )
    assert global_arms["local-large"].pulls == 1
    assert stats.cursor == 3

    found = await observer.stub.GetDecision(
        observer_pb2.GetDecisionRequest(decision_id="d-acme-2"), timeout=TIMEOUT
    )
    assert found.decision.route == "auto" and found.tenant == "acme" and found.replica_id == "adapters-test"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await observer.stub.GetDecision(observer_pb2.GetDecisionRequest(decision_id="nope"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_batches_are_refused(tmp_path: Path) -> None:
    running = await build_server(
        settings_for(tmp_path, max_batch_observations=2, buffer_observations=10), config=builtin_config("")
    )
    client = Observer(running)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.ingest([observation("acme", i) for i in range(3)])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # An observation that cannot be stored is left out alone: the one beside it is stored.
        missing_id = observation("acme", 9)
        missing_id.observation_id = ""
        reply = await client.ingest([missing_id, observation("acme", 1)])
        assert (reply.stored, reply.duplicates) == (1, 0)
        invalid = REGISTRY.get_sample_value("atp_observer_ingested_observations_total", {"result": "invalid"})
        assert invalid is not None and invalid >= 1
    finally:
        await client.close()


async def test_database_outage_is_buffered_then_pushed_back_then_written(tmp_path: Path) -> None:
    path = tmp_path / "observer.sqlite3"
    settings = settings_for(
        tmp_path, buffer_observations=4, max_batch_observations=4, buffer_wait_s=0.2, retry_max_s=0.1
    )
    # The real SQLite store, with a short busy timeout so a locked database fails fast instead of blocking.
    store = SqliteStore(path, reward_model=RewardModel.from_config(builtin_config("")), busy_timeout_s=0.05)
    running = await build_server(settings, config=builtin_config(""), store=store)
    client = Observer(running)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        await client.ingest([observation("acme", 0)])
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database: writes fail as locked
        waiting = asyncio.ensure_future(client.ingest([observation("acme", i) for i in range(1, 4)]))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # accepted into the buffer, not acknowledged: nothing committed yet

        # The buffer holds 3 of 4: a batch of 2 finds no room and is pushed back for the sender to spool.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.ingest([observation("acme", 10), observation("acme", 11)])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        blocker.execute("ROLLBACK")  # the database is back
        reply = await asyncio.wait_for(waiting, TIMEOUT)
        assert (reply.stored, reply.duplicates) == (3, 0)
        usage = await client.stub.QueryUsage(observer_pb2.QueryUsageRequest(tenant="acme"), timeout=TIMEOUT)
        assert [row.requests for row in usage.rows] == [4]
    finally:
        blocker.close()
        await client.close()


async def test_drain_ends_reward_streams_promptly(tmp_path: Path) -> None:
    running = await build_server(settings_for(tmp_path, grace_s=10.0), config=builtin_config(""))
    client = Observer(running)
    try:
        await client.ingest([observation("acme", 0)])
        call = client.stub.WatchRewards(observer_pb2.WatchRewardsRequest(cursor=0), timeout=TIMEOUT)
        assert len((await call.read()).events) == 1
        started = time.monotonic()
        await running.drain()
        # The stream ended cleanly when the drain began, so the drain did not wait out the 10 s grace.
        assert time.monotonic() - started < 3.0
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    finally:
        await client.close()


async def test_a_batch_from_an_older_release_with_its_rows_is_ingested(observer: Observer) -> None:
    # Spooled or logged before the rows were dropped: each batch carried field 2 (`rows`, now reserved)
    # beside the observations. The observer skips it as an unknown field and stores the observations.
    observations = [observation("acme", 70), observation("acme", 71)]
    rows = b'[["o-acme-70","d-acme-70","acme"],["o-acme-71","d-acme-71","acme"]]'
    old = observer_pb2.IngestRequest(observations=observations).SerializeToString()
    old += b"\x12" + bytes([len(rows)]) + rows
    parsed = observer_pb2.IngestRequest.FromString(old)
    assert parsed.SerializeToString() == old  # the unknown field travels with the resent batch

    async def requests() -> AsyncIterator[observer_pb2.IngestRequest]:
        yield parsed

    reply = await observer.stub.Ingest(requests(), timeout=TIMEOUT)
    assert (reply.stored, reply.duplicates) == (2, 0)
    stored = await observer.stub.ListObservations(
        observer_pb2.ListObservationsRequest(tenant="acme", limit=10), timeout=TIMEOUT
    )
    assert sorted(o.observation_id for o in stored.observations) == ["o-acme-70", "o-acme-71"]
