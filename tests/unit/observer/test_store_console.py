"""The console's store queries (on SQLite here, on PostgreSQL in integration): usage in time buckets, filtered observations,
a decision's feedback and the store's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.queries import Queries
from atp_observer.store import Store
from atp_observer.store.console import ObservationFilters
from tests.support.observations import ERROR, feedback, make_obs

HOUR = 3600


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


async def test_usage_in_hourly_buckets_per_model(store: Store) -> None:
    base = _hour(datetime.now(UTC)) - timedelta(hours=3)
    await store.insert_observations(
        [
            make_obs(model="small", started=base + timedelta(minutes=5), cost_usd=0.01),
            make_obs(model="small", started=base + timedelta(minutes=50), cost_usd=0.02),
            make_obs(model="large", started=base + timedelta(minutes=70), cost_usd=0.5, status=ERROR),
            make_obs(model="small", started=base + timedelta(minutes=130), cost_usd=0.04),
            make_obs(tenant="globex", model="small", started=base + timedelta(minutes=10)),
        ]
    )
    rows = await store.query_usage("acme", base, None, ["model"], bucket_s=HOUR)
    got = [(r.bucket_start.ToDatetime(tzinfo=UTC), r.model, r.requests, r.errors) for r in rows]
    assert got == [
        (base, "small", 2, 0),
        (base + timedelta(hours=1), "large", 1, 1),
        (base + timedelta(hours=2), "small", 1, 0),
    ]
    assert rows[0].cost_usd == pytest.approx(0.03)
    assert rows[0].prompt_tokens == 20 and rows[0].completion_tokens == 10

    every_tenant = await store.query_usage("", base, None, ["tenant"], bucket_s=86_400)
    assert sum(r.requests for r in every_tenant) == 5
    assert {r.tenant for r in every_tenant} == {"acme", "globex"}
    # Without buckets nothing changes: no bucket_start.
    (total,) = await store.query_usage("acme", base, None, [])
    assert total.requests == 4 and not total.HasField("bucket_start")


@pytest.mark.parametrize(
    ("bucket_s", "start", "param"),
    [
        (30, True, "bucket_seconds"),
        (90_000, True, "bucket_seconds"),
        (HOUR, False, "start"),
        (60, True, "bucket_seconds"),
    ],
)
async def test_bad_buckets_are_refused(store: Store, bucket_s: int, start: bool, param: str) -> None:
    # The last case: a year of minutes is more buckets than one answer holds.
    since = datetime.now(UTC) - (timedelta(days=365) if bucket_s == 60 else timedelta(hours=1))
    with pytest.raises(InvalidArgument) as info:
        await store.query_usage("acme", since if start else None, None, ["model"], bucket_s=bucket_s)
    assert info.value.param == param


async def test_observations_filtered_by_model_route_status_and_time(store: Store) -> None:
    now = datetime.now(UTC)
    old = make_obs(model="small", started=now - timedelta(hours=5))
    small = make_obs(model="small", started=now - timedelta(minutes=3))
    large = make_obs(model="large", route="premium", started=now - timedelta(minutes=2))
    failed = make_obs(model="large", status=ERROR, started=now - timedelta(minutes=1))
    other = make_obs(tenant="globex", model="large", started=now - timedelta(minutes=1))
    await store.insert_observations([old, small, large, failed, other])

    async def ids(filters: ObservationFilters) -> list[str]:
        found = await store.list_observations("acme", 50, None, "", filters)
        return [o.observation_id for o in found]

    assert await ids(ObservationFilters()) == [o.observation_id for o in (failed, large, small, old)]
    assert await ids(ObservationFilters(model="large")) == [failed.observation_id, large.observation_id]
    assert await ids(ObservationFilters(route="premium")) == [large.observation_id]
    assert await ids(ObservationFilters(status=ERROR)) == [failed.observation_id]
    assert await ids(ObservationFilters(after=now - timedelta(hours=1), model="small")) == [
        small.observation_id
    ]
    # Filters and paging together: the page after `failed` among the large model's observations.
    page = await store.list_observations(
        "acme",
        50,
        failed.started_at.ToDatetime(tzinfo=UTC),
        failed.observation_id,
        ObservationFilters(model="large"),
    )
    assert [o.observation_id for o in page] == [large.observation_id]


async def test_feedback_of_a_decision_for_its_tenant_only(store: Store) -> None:
    obs = make_obs()
    await store.insert_observations([obs])
    await store.record_feedback(feedback(obs, 0.25))
    await store.record_feedback(feedback(obs, 0.75))
    records = await store.list_feedback(obs.decision.decision_id, "acme")
    assert [r.score for r in records] == [0.25, 0.75]
    assert records[0].label == "thumbs" and records[0].source == "test"
    age = datetime.now(UTC) - records[0].created_at.ToDatetime(tzinfo=UTC)
    assert timedelta(0) <= age < timedelta(minutes=1)
    assert await store.list_feedback(obs.decision.decision_id, "globex") == []
    assert await store.list_feedback("dec-unknown", "acme") == []
    queries = Queries(store, on_reward=lambda: None)
    reply = await queries.list_feedback(
        observer_pb2.ListFeedbackRequest(decision_id=obs.decision.decision_id, tenant="acme")
    )
    assert [r.feedback_id for r in reply.feedback] == [r.feedback_id for r in records]
    for missing in ("decision_id", "tenant"):
        request = observer_pb2.ListFeedbackRequest(decision_id="dec-1", tenant="acme")
        request.ClearField(missing)
        with pytest.raises(InvalidArgument) as info:
            await queries.list_feedback(request)
        assert info.value.param == missing


async def test_store_status_reports_the_backend_and_an_outage(make_store) -> None:
    store = make_store()
    queries = Queries(store, on_reward=lambda: None)
    await store.open()
    try:
        status = await queries.store_status(ingest_pending=3)
        assert (status.backend, status.reachable, status.error, status.ingest_pending) == (
            type(store).__name__.removesuffix("Store").lower(),
            True,
            "",
            3,
        )
    finally:
        await store.close()
    # A closed store cannot answer: reported, not raised.
    down = await queries.store_status(ingest_pending=0)
    assert down.reachable is False and down.error and down.backend == status.backend
