"""Circuits seen by the router: one adapters server's open circuit excludes the model in the router's Route
and in a second adapters server following the same router, until the first one's probe succeeds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from grpc import aio

from atp.adapters.v1 import adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.server import RunningServer
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.fakes import FakeOpenAI, Faults
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.adapters_suite import generate, make_config, request
from tests.support.ports import free_port
from tests.support.stack import until

OPEN_S = 1.0


@dataclass
class Replica:
    server: RunningServer
    channel: aio.Channel
    stub: adapters_pb2_grpc.AdaptersServiceStub

    @property
    def holder(self):
        return self.server.parts.holder

    def router_excludes(self, model: str) -> bool:
        """Whether the router's snapshot this replica follows excludes `model`."""
        return any(e.model == model for e in self.holder.snapshot.exclusions)


@contextlib.asynccontextmanager
async def replica(
    name: str, config: AtpConfig, router_addr: str, observer_addr: str, tmp_path: Path
) -> AsyncIterator[Replica]:
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        replica_id=name,
        router_addr=router_addr,
        observer_addr=observer_addr,
        spool_dir=str(tmp_path / name),
        ship_interval_s=0.02,
        report_backoff_initial_s=0.05,
        report_backoff_max_s=0.2,
        watch_backoff_initial_s=0.05,
        watch_backoff_max_s=0.2,
        drain_delay_s=0.05,
        grace_s=1.0,
    )
    server = await build_adapters(settings, config=config)
    channel = aio.insecure_channel(server.address)
    try:
        yield Replica(server, channel, adapters_pb2_grpc.AdaptersServiceStub(channel))
    finally:
        await channel.close()
        await server.stop_now()


async def start_router(config: AtpConfig, port: int = 0) -> RunningServer:
    return await build_router(
        RouterSettings(
            port=port,
            metrics_port=None,
            observer_addr="",
            drain_delay_s=0.05,
            grace_s=1.0,
            reload_on_sighup=False,
            snapshot_min_interval_s=0.0,
            seed=3,
        ),
        config=config,
    )


async def route(router: router_pb2_grpc.RouterServiceStub) -> chat_pb2.Decision:
    reply = await router.Route(
        router_pb2.RouteRequest(
            tenant="acme", model="chain", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
        ),
        timeout=5,
    )
    return reply.decision


async def wait_route_first(router: router_pb2_grpc.RouterServiceStub, model: str, within_s: float = 5.0):
    deadline = time.monotonic() + within_s
    while (decision := await route(router)).candidates[0].model != model:
        assert time.monotonic() < deadline, f"Route still ranks {decision.candidates[0].model} first"
        await asyncio.sleep(0.02)
    return decision


@dataclass
class World:
    primary: FakeOpenAI
    secondary: FakeOpenAI
    observer: RecordingObserver
    observer_addr: str
    config: AtpConfig


@contextlib.asynccontextmanager
async def world(open_s: float = OPEN_S) -> AsyncIterator[World]:
    primary, secondary = FakeOpenAI(), FakeOpenAI()
    await primary.start()
    await secondary.start()
    observer, observer_server = await start_recording_observer()
    config = make_config(primary, secondary, max_retries=0, circuit_failures=3, circuit_open_s=open_s)
    try:
        yield World(primary, secondary, observer, observer_server.address, config)
    finally:
        await observer_server.stop_now()
        await primary.stop()
        await secondary.stop()


async def open_the_circuit(world: World, first: Replica) -> None:
    world.primary.faults = Faults(status=503)
    for _ in range(3):
        responses = await generate(first.stub, request(stream=False))
        assert responses[0].header.model == "m-b"
    assert first.server.parts.exclusions.open_models == {"m-a"}


async def test_an_open_circuit_in_one_replica_excludes_the_model_everywhere_until_its_probe_succeeds(
    tmp_path: Path,
):
    async with world() as w:
        router_server = await start_router(w.config)
        channel = aio.insecure_channel(router_server.address)
        router = router_pb2_grpc.RouterServiceStub(channel)
        try:
            async with (
                replica("replica-a", w.config, router_server.address, w.observer_addr, tmp_path) as a,
                replica("replica-b", w.config, router_server.address, w.observer_addr, tmp_path) as b,
            ):
                for each in (a, b):
                    await each.holder.wait_for(lambda h: h.version > 0, within_s=5)
                assert (await route(router)).candidates[0].model == "m-a"

                await open_the_circuit(w, a)
                assert len(w.primary.requests) == 3

                # The router's own Route leaves m-a out, naming the replica whose circuit is open.
                decision = await wait_route_first(router, "m-b")
                assert [c.model for c in decision.candidates] == ["m-b"]
                assert decision.filtered[0].model == "m-a"
                assert "replica-a" in decision.filtered[0].reason

                # The second replica never called m-a, yet its decisions leave m-a out too.
                await b.holder.wait_for(lambda h: any(e.model == "m-a" for e in h.snapshot.exclusions), 5)
                req = request(stream=True, request_id="b-while-open")
                responses = await generate(b.stub, req)
                assert responses[0].header.model == "m-b"
                observation = await w.observer.wait_for("b-while-open")
                assert [c.model for c in observation.decision.candidates] == ["m-b"]
                assert "replica-a" in observation.decision.filtered[0].reason
                assert len(w.primary.requests) == 3

                # The provider recovers. The first replica's local exclusion lapses at its probe time; the
                # others still wait (no traffic reaches m-a from b) until that probe has gone.
                w.primary.faults = Faults()
                local_until = a.server.parts.exclusions.exclusions()[0].until.ToNanoseconds() / 1e9
                await asyncio.sleep(max(local_until - time.time(), 0) + 0.05)
                responses = await generate(b.stub, request(stream=False))
                assert responses[0].header.model == "m-b"
                assert len(w.primary.requests) == 3, "b sent nothing to m-a before a's probe"

                # The first replica's next request is the probe; it succeeds and the circuit closes.
                responses = await generate(a.stub, request(stream=False))
                assert responses[0].header.model == "m-a"
                assert len(w.primary.requests) == 4
                assert a.server.parts.exclusions.open_models == frozenset()

                # The router withdraws the exclusion: Route and the second replica choose m-a again.
                await wait_route_first(router, "m-a")
                await b.holder.wait_for(lambda h: not h.snapshot.exclusions, within_s=5)
                responses = await generate(b.stub, request(stream=True))
                assert responses[0].header.model == "m-a"
        finally:
            await channel.close()
            await router_server.stop_now()


async def test_a_report_the_router_missed_is_sent_again_when_it_comes_back(tmp_path: Path):
    # The circuit stays open for the whole test, however slow the machine.
    async with world(open_s=60.0) as w:
        port = free_port()
        async with replica("replica-a", w.config, f"127.0.0.1:{port}", w.observer_addr, tmp_path) as a:
            # No router yet: the circuit opens and the report fails (and is retried with backoff).
            await open_the_circuit(w, a)
            assert a.server.parts.reporter.delivered is None

            router_server = await start_router(w.config, port)
            channel = aio.insecure_channel(router_server.address)
            try:
                decision = await wait_route_first(router_pb2_grpc.RouterServiceStub(channel), "m-b")
                assert decision.filtered[0].model == "m-a"
                # The router applies the report before its reply reaches the reporter: wait for the reply.
                await until(lambda: a.server.parts.reporter.delivered is not None, what="the report's reply")
                delivered = a.server.parts.reporter.delivered
                assert delivered is not None and [e.model for e in delivered.exclusions] == ["m-a"]
            finally:
                await channel.close()
                await router_server.stop_now()

            # A restarted router has forgotten the report: the watch reconnecting sends it again.
            router_server = await start_router(w.config, port)
            channel = aio.insecure_channel(router_server.address)
            try:
                await wait_route_first(router_pb2_grpc.RouterServiceStub(channel), "m-b")
            finally:
                await channel.close()
                await router_server.stop_now()
