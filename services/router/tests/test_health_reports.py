"""ReportExclusions against a real router: reports merge across replicas, replace, lapse, and steer Route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from atp.common.v1 import chat_pb2
from atp.router.v1 import health_report_pb2, health_report_pb2_grpc, router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.server import RunningServer
from atp_router.server import build_server
from atp_router.settings import RouterSettings

TIMEOUT = 10.0


class Router:
    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.channel = open_channel(running.address)
        self.route = router_pb2_grpc.RouterServiceStub(self.channel)
        self.health = health_report_pb2_grpc.HealthReportServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        await self.running.stop_now()

    async def first_choice(self) -> str:
        reply = await self.route.Route(
            router_pb2.RouteRequest(
                tenant="acme", model="auto", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
            ),
            timeout=TIMEOUT,
        )
        return reply.decision.candidates[0].model

    async def wait_first_choice(self, model: str, within_s: float = 5.0) -> None:
        # Polls with a deadline: the snapshot is rebuilt by the publisher's task, not by the report itself.
        deadline = time.monotonic() + within_s
        while (chosen := await self.first_choice()) != model:
            assert time.monotonic() < deadline, f"Route still chooses {chosen}, not {model}"
            await asyncio.sleep(0.02)

    async def report(
        self, replica: str, sequence: int, *models: str, hold_s: float = 60.0
    ) -> health_report_pb2.ReportExclusionsResponse:
        request = health_report_pb2.ReportExclusionsRequest(replica_id=replica, sequence=sequence)
        for model in models:
            exclusion = request.exclusions.add(model=model, reason="HTTP 503 from the provider")
            exclusion.until.FromNanoseconds(int((time.time() + hold_s) * 1e9))
        return await self.health.ReportExclusions(request, timeout=TIMEOUT)


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    settings = RouterSettings(
        port=0,
        metrics_port=None,
        config_path="",
        observer_addr="",
        drain_delay_s=0.05,
        grace_s=1.0,
        reload_on_sighup=False,
        snapshot_min_interval_s=0.0,
        seed=7,
    )
    client = Router(await build_server(settings, config=builtin_config("")))
    yield client
    await client.close()


async def test_reports_merge_across_replicas_and_each_replaces_its_previous_one(router: Router) -> None:
    assert await router.first_choice() == "local-small"

    reply = await router.report("replica-a", 1, "local-small")
    assert reply.applied and list(reply.excluded_models) == ["local-small"]
    await router.wait_first_choice("local-large")

    # A second replica reports the same model; the first withdraws: still excluded (by the second).
    await router.report("replica-b", 5, "local-small")
    reply = await router.report("replica-a", 2)
    assert reply.applied and list(reply.excluded_models) == ["local-small"]
    assert await router.first_choice() == "local-large"

    # An older report from replica-b (delayed in the network) cannot undo its newer one.
    stale = await router.report("replica-b", 4)
    assert not stale.applied and list(stale.excluded_models) == ["local-small"]

    reply = await router.report("replica-b", 6)
    assert reply.applied and not reply.excluded_models
    await router.wait_first_choice("local-small")


async def test_the_snapshot_carries_the_merged_exclusion_and_drops_it_when_it_lapses(router: Router) -> None:
    stream = router.route.WatchPolicy(router_pb2.WatchPolicyRequest(replica_id="t"), timeout=TIMEOUT)
    first = (await stream.read()).snapshot
    assert not first.exclusions

    await router.report("replica-a", 1, "local-small", hold_s=0.6)
    with_exclusion = (await stream.read()).snapshot
    assert [e.model for e in with_exclusion.exclusions] == ["local-small"]
    assert "replica-a" in with_exclusion.exclusions[0].reason
    assert "HTTP 503" in with_exclusion.exclusions[0].reason
    assert await router.first_choice() == "local-large"

    # Nobody renews it: at its `until` it lapses and a snapshot without it is pushed.
    lapsed = (await stream.read()).snapshot
    assert not lapsed.exclusions and lapsed.version > with_exclusion.version
    assert await router.first_choice() == "local-small"
    stream.cancel()


async def test_bad_reports_are_invalid_arguments(router: Router) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.health.ReportExclusions(health_report_pb2.ReportExclusionsRequest(), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = health_report_pb2.ReportExclusionsRequest(replica_id="r", sequence=1)
    request.exclusions.add(model="")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.health.ReportExclusions(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
