"""Policy watch: a real RouterService on port 0 streams snapshots; adapters adopt them and ride out restarts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig, builtin_config
from atp_common.policy.snapshot import snapshot_from_config
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings

ROUTER_SERVICE = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


class SnapshotRouter(router_pb2_grpc.RouterServiceServicer):
    """Streams the snapshot it holds at once, then each one `publish` hands it."""

    def __init__(self, snapshot: router_pb2.PolicySnapshot) -> None:
        self.snapshot = snapshot
        self.watchers: list[router_pb2.WatchPolicyRequest] = []
        self.sent: list[int] = []
        self.sent_changed = asyncio.Event()
        self._changed = asyncio.Event()

    def publish(self, snapshot: router_pb2.PolicySnapshot) -> None:
        self.snapshot = snapshot
        self._changed.set()
        self._changed = asyncio.Event()

    async def WatchPolicy(self, request, context):
        self.watchers.append(request)
        while True:
            changed = self._changed
            self.sent.append(self.snapshot.version)
            self.sent_changed.set()
            yield router_pb2.WatchPolicyResponse(snapshot=self.snapshot)
            await changed.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_with_order(*order: str) -> AtpConfig:
    raw = builtin_config("").model_dump()
    raw["routes"]["auto"]["candidates"] = list(order)
    return AtpConfig.model_validate(raw)


async def start_router(router: SnapshotRouter, port: int) -> RunningServer:
    return await start_server(
        ServiceSettings(port=port, grace_s=0.1),
        [ServiceRegistration(router_pb2_grpc.add_RouterServiceServicer_to_server, router, ROUTER_SERVICE)],
    )


async def served_model(stub: adapters_pb2_grpc.AdaptersServiceStub) -> str:
    request = adapters_pb2.GenerateRequest(
        tenant="t", model="auto", stream=False, messages=[chat_pb2.ChatMessage(role="user", content="hi")]
    )
    responses = [r async for r in stub.Generate(request, timeout=5)]
    return responses[0].header.model


@pytest.fixture
async def router_port() -> int:
    return free_port()


@pytest.fixture
async def adapters(
    tmp_path: Path, router_port: int
) -> AsyncIterator[tuple[RunningServer, adapters_pb2_grpc.AdaptersServiceStub]]:
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{router_port}",
        observer_addr=f"127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "spool"),
        watch_backoff_initial_s=0.05,
        watch_backoff_max_s=0.2,
    )
    running = await build_server(settings, config=config_with_order("local-small", "local-large"))
    channel = aio.insecure_channel(running.address)
    yield running, adapters_pb2_grpc.AdaptersServiceStub(channel)
    await channel.close()
    await running.stop_now()


async def test_static_order_until_the_router_speaks(adapters):
    running, stub = adapters
    assert running.parts.holder.version == 0
    assert await served_model(stub) == "local-small"


async def test_snapshots_are_swapped_and_survive_router_restarts(adapters, router_port: int):
    running, stub = adapters
    holder = running.parts.holder
    router = SnapshotRouter(snapshot_from_config(config_with_order("local-large", "local-small"), version=5))
    router_server = await start_router(router, router_port)
    await holder.wait_for(lambda h: h.version == 5, within_s=10)
    assert await served_model(stub) == "local-large"

    # A pushed change is adopted on the open stream.
    router.publish(snapshot_from_config(config_with_order("local-small", "local-large"), version=6))
    await holder.wait_for(lambda h: h.version == 6, within_s=5)
    assert await served_model(stub) == "local-small"

    # The router goes away: requests are still served, on the last snapshot.
    await router_server.stop_now()
    for _ in range(3):
        assert await served_model(stub) == "local-small"
    assert holder.version == 6

    # A new router on the same address: its snapshot arrives, and it was told what we had.
    router2 = SnapshotRouter(snapshot_from_config(config_with_order("local-large", "local-small"), version=7))
    router_server2 = await start_router(router2, router_port)
    try:
        await holder.wait_for(lambda h: h.version == 7, within_s=15)
        assert await served_model(stub) == "local-large"
        assert router2.watchers[-1].known_version == 6
        assert router2.watchers[-1].replica_id == running.settings.replica_id
    finally:
        await router_server2.stop_now()


async def test_an_uncompilable_snapshot_keeps_the_last_one(adapters, router_port: int, caplog):
    running, stub = adapters
    holder = running.parts.holder
    good = snapshot_from_config(config_with_order("local-large", "local-small"), version=3)
    router = SnapshotRouter(good)
    router_server = await start_router(router, router_port)
    try:
        await holder.wait_for(lambda h: h.version == 3, within_s=10)
        broken = router_pb2.PolicySnapshot()
        broken.CopyFrom(good)
        broken.version = 4
        broken.routes[0].candidates.append("no-such-model")
        router.publish(broken)
        async with asyncio.timeout(5):
            while 4 not in router.sent:
                router.sent_changed.clear()
                await router.sent_changed.wait()
        # Sent in order on one stream: once 5 is adopted, 4 was seen and refused.
        router.publish(snapshot_from_config(config_with_order("local-small", "local-large"), version=5))
        await holder.wait_for(lambda h: h.version == 5, within_s=5)
        assert await served_model(stub) == "local-small"
        assert any("cannot compile policy snapshot 4" in r.getMessage() for r in caplog.records)
    finally:
        await router_server.stop_now()
