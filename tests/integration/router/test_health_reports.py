"""ReportExclusions against a real router: reports merge across replicas, replace, lapse, and steer Route."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import grpc
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

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

    async def wait_excluded(self, *models: str, within_s: float = 10.0) -> router_pb2.PolicySnapshot:
        """The first published snapshot excluding exactly `models` (watched, with a deadline)."""
        seen: list[str] = []
        stream = self.route.WatchPolicy(router_pb2.WatchPolicyRequest(replica_id="test"), timeout=TIMEOUT)
        try:
            async with asyncio.timeout(within_s):
                while True:
                    snapshot = (await stream.read()).snapshot
                    seen = sorted(e.model for e in snapshot.exclusions)
                    if seen == sorted(models):
                        return snapshot
        except TimeoutError:
            pytest.fail(f"the snapshot still excludes {seen}, not {sorted(models)}")
        finally:
            stream.cancel()

    async def report(
        self, replica: str, sequence: int, *models: str, hold_s: float = 60.0, until: float | None = None
    ) -> health_report_pb2.ReportExclusionsResponse:
        request = health_report_pb2.ReportExclusionsRequest(replica_id=replica, sequence=sequence)
        for model in models:
            exclusion = request.exclusions.add(model=model, reason="HTTP 503 from the provider")
            exclusion.until.FromNanoseconds(int((until or time.time() + hold_s) * 1e9))
        return await self.health.ReportExclusions(request, timeout=TIMEOUT)


async def start_router(**settings: Any) -> Router:
    defaults: dict[str, Any] = {
        "port": 0,
        "metrics_port": None,
        "config_path": "",
        "observer_addr": "",
        "drain_delay_s": 0.05,
        "grace_s": 1.0,
        "reload_on_sighup": False,
        "snapshot_min_interval_s": 0.0,
        "seed": 7,
        "redis_url": "",
    }
    return Router(await build_server(RouterSettings(**{**defaults, **settings}), config=builtin_config("")))


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    client = await start_router()
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


# Several router replicas sharing one Redis: an adapters replica reports to whichever one it is connected to.


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _delete_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class RedisProxy:
    """A TCP proxy on loopback in front of the real Redis: cutting it is a real outage for whoever connects
    through it (open connections end, new ones are refused), and restoring it on the same port ends it."""

    def __init__(self, redis_url: str) -> None:
        target = urlparse(redis_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 6379)
        self._path = target.path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self._path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(*self._target), TIMEOUT
        )
        pairs = ((client_reader, upstream_writer), (upstream_reader, client_writer))
        self._writers.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(*(self._pump(reader, writer) for reader, writer in pairs))
        finally:
            self._writers.difference_update((client_writer, upstream_writer))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.fixture
def prefix(redis_url: str) -> str:
    return f"t{secrets.token_hex(6)}:"


@pytest.fixture
async def two_routers(redis_url: str, prefix: str) -> AsyncIterator[tuple[Router, Router]]:
    first = await start_router(redis_url=redis_url, redis_prefix=prefix)
    second = await start_router(redis_url=redis_url, redis_prefix=prefix)
    yield first, second
    await first.close()
    await second.close()
    await _delete_prefix(redis_url, prefix)


@pytest.mark.redis
async def test_a_report_to_one_router_replica_reaches_the_others_and_a_newer_one_clears_it(
    two_routers: tuple[Router, Router],
) -> None:
    a, b = two_routers
    assert await b.first_choice() == "local-small"

    reply = await a.report("adapters-1", 1, "local-small")
    assert reply.applied and list(reply.excluded_models) == ["local-small"]
    snapshot = await b.wait_excluded("local-small")
    assert "adapters-1" in snapshot.exclusions[0].reason and "HTTP 503" in snapshot.exclusions[0].reason
    await b.wait_first_choice("local-large")

    # The adapters replica reconnects to the other router replica: a delayed older report cannot undo what
    # the first took, and its newer, empty report clears the exclusion on both.
    stale = await b.report("adapters-1", 1)
    assert not stale.applied and list(stale.excluded_models) == ["local-small"]
    reply = await b.report("adapters-1", 2)
    assert reply.applied and not reply.excluded_models
    await b.wait_excluded()
    await a.wait_excluded()
    await a.wait_first_choice("local-small")
    stale = await a.report("adapters-1", 1, "local-small")
    assert not stale.applied and not stale.excluded_models


@pytest.mark.redis
async def test_a_shared_exclusion_lapses_on_every_router_replica_at_its_until(
    two_routers: tuple[Router, Router],
) -> None:
    a, b = two_routers
    until = time.time() + 2.0
    await a.report("adapters-1", 1, "local-small", until=until)
    snapshot = await b.wait_excluded("local-small")
    assert snapshot.exclusions[0].until.ToMilliseconds() == int(until * 1000)

    # Nobody renews it: both drop it at `until`, with nothing written to Redis.
    await b.wait_excluded()
    await a.wait_excluded()
    assert await a.first_choice() == await b.first_choice() == "local-small"


@pytest.mark.redis
async def test_a_router_replica_that_starts_later_takes_the_shared_exclusions(
    redis_url: str, prefix: str
) -> None:
    a = await start_router(redis_url=redis_url, redis_prefix=prefix)
    try:
        await a.report("adapters-1", 1, "local-small")
        late = await start_router(redis_url=redis_url, redis_prefix=prefix)
        try:
            # Read once at start-up, before any new report or version change.
            await late.wait_excluded("local-small")
            await late.wait_first_choice("local-large")
        finally:
            await late.close()
    finally:
        await a.close()
        await _delete_prefix(redis_url, prefix)


async def test_without_a_reachable_redis_each_router_replica_keeps_its_own_reports() -> None:
    down = await start_router(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        assert REGISTRY.get_sample_value("atp_router_exclusion_share_up") == 0
        errors = REGISTRY.get_sample_value("atp_router_exclusion_share_errors_total") or 0
        assert errors > 0

        reply = await down.report("adapters-1", 1, "local-small", hold_s=1.0)
        assert reply.applied and list(reply.excluded_models) == ["local-small"]
        await down.wait_first_choice("local-large")
        await down.wait_excluded()
        await down.wait_first_choice("local-small")
    finally:
        await down.close()


@pytest.mark.redis
async def test_an_outage_falls_back_to_local_reports_and_recovery_shares_them(
    redis_url: str, prefix: str
) -> None:
    proxy = RedisProxy(redis_url)
    await proxy.start()
    a = await start_router(redis_url=redis_url, redis_prefix=prefix)
    b = await start_router(redis_url=proxy.url, redis_prefix=prefix)
    try:
        await a.report("adapters-1", 1, "local-small")
        await b.wait_excluded("local-small")

        # B loses Redis: it routes on the reports it took itself (none), and still takes new ones.
        await proxy.cut()
        await b.wait_excluded()
        reply = await b.report("adapters-2", 1, "local-large")
        assert reply.applied and list(reply.excluded_models) == ["local-large"]
        await b.wait_excluded("local-large")
        await b.wait_first_choice("local-small")

        # Redis is back: B writes what it took meanwhile, so A learns it, and B sees A's again.
        await proxy.start()
        await a.wait_excluded("local-large", "local-small")
        await b.wait_excluded("local-large", "local-small")
    finally:
        await a.close()
        await b.close()
        await proxy.cut()
        await _delete_prefix(redis_url, prefix)
