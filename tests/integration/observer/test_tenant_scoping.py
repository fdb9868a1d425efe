"""Tenant scoping of the observer's queries over gRPC on PostgreSQL: one tenant never reads another's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings
from tests.support.ingest_support import observation

pytestmark = pytest.mark.postgres
TIMEOUT = 10.0
# Look-alike names: a prefix, a case variant and a quoted one must each be a tenant of their own.
TENANTS = {"acme": 7, "globex": 4, "acme-corp": 2, "ACME": 1, "acme' OR '1'='1": 1}


@pytest.fixture
async def stub(postgres_dsn: str) -> AsyncIterator[observer_pb2_grpc.ObserverServiceStub]:
    settings = ObserverSettings(
        port=0, metrics_port=None, database_url=postgres_dsn, drain_delay_s=0.0, grace_s=2.0
    )
    running = await build_server(settings, config=builtin_config(""))
    channel = open_channel(running.address)
    try:
        stub = observer_pb2_grpc.ObserverServiceStub(channel)
        batch = [
            observation(f"{tenant}/{i}", tenant=tenant)
            for tenant, count in TENANTS.items()
            for i in range(count)
        ]
        # Distinct start times: paging goes by `before` (a timestamp), which would skip a tie at a page edge.
        now = batch[0].started_at.ToMicroseconds()
        for k, obs in enumerate(batch):
            obs.started_at.FromMicroseconds(now - 1000 * k)
        reply = await stub.Ingest(iter([observer_pb2.IngestRequest(observations=batch)]), timeout=TIMEOUT)
        assert reply.stored == sum(TENANTS.values())
        yield stub
    finally:
        await channel.close()
        await running.stop_now()


async def list_all(
    stub: observer_pb2_grpc.ObserverServiceStub, tenant: str
) -> list[observer_pb2.Observation]:
    """Every page of ListObservations for `tenant`, three at a time."""
    seen: list[observer_pb2.Observation] = []
    request = observer_pb2.ListObservationsRequest(tenant=tenant, limit=3)
    while True:
        page = (await stub.ListObservations(request, timeout=TIMEOUT)).observations
        if not page:
            return seen
        seen.extend(page)
        request.before.CopyFrom(page[-1].started_at)


@pytest.mark.parametrize("tenant", list(TENANTS))
async def test_list_observations_returns_only_the_callers_tenant(
    stub: observer_pb2_grpc.ObserverServiceStub, tenant: str
) -> None:
    listed = await list_all(stub, tenant)
    assert {o.tenant for o in listed} == {tenant}
    assert sorted(o.observation_id for o in listed) == sorted(f"{tenant}/{i}" for i in range(TENANTS[tenant]))


async def test_list_observations_of_an_unknown_tenant_is_empty_and_no_tenant_is_refused(
    stub: observer_pb2_grpc.ObserverServiceStub,
) -> None:
    assert await list_all(stub, "initech") == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListObservations(observer_pb2.ListObservationsRequest(limit=10), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_query_usage_is_scoped_to_the_named_tenant(stub: observer_pb2_grpc.ObserverServiceStub) -> None:
    for tenant, count in TENANTS.items():
        grouped = await stub.QueryUsage(
            observer_pb2.QueryUsageRequest(tenant=tenant, group_by=["tenant", "model"]), timeout=TIMEOUT
        )
        assert [(r.tenant, r.requests, r.prompt_tokens) for r in grouped.rows] == [
            (tenant, count, 10 * count)
        ]
        total = await stub.QueryUsage(observer_pb2.QueryUsageRequest(tenant=tenant), timeout=TIMEOUT)
        assert [r.requests for r in total.rows] == [count]
    nobody = await stub.QueryUsage(observer_pb2.QueryUsageRequest(tenant="initech"), timeout=TIMEOUT)
    assert list(nobody.rows) == []
    # No tenant is the operator view (the gateway allows it only under an operator key): every tenant's rows.
    everyone = await stub.QueryUsage(observer_pb2.QueryUsageRequest(group_by=["tenant"]), timeout=TIMEOUT)
    assert {r.tenant: r.requests for r in everyone.rows} == TENANTS


async def test_feedback_on_another_tenants_decision_is_refused(
    stub: observer_pb2_grpc.ObserverServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordFeedback(
            observer_pb2.RecordFeedbackRequest(decision_id="d-globex/0", tenant="acme", score=1.0),
            timeout=TIMEOUT,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    own = await stub.RecordFeedback(
        observer_pb2.RecordFeedbackRequest(decision_id="d-globex/0", tenant="globex", score=1.0),
        timeout=TIMEOUT,
    )
    assert own.joined
