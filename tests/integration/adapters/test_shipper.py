"""Observation shipping against the real observer server: spool while it is down, deliver once it is up."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_adapters.shipper import encode_observation
from atp_adapters.spool import Spool, SpoolFull
from atp_common.config import builtin_config
from atp_common.server import RunningServer
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings

TENANT = "acme"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_observer(tmp_path: Path, port: int) -> RunningServer:
    settings = ObserverSettings(
        port=port, metrics_port=None, sqlite_path=str(tmp_path / "observer.sqlite3"), drain_delay_s=0.0
    )
    return await build_observer(settings, config=builtin_config(""))


async def start_adapters(tmp_path: Path, observer_port: int, **overrides) -> RunningServer:
    fields = {
        "ship_interval_s": 0.02,
        "ship_batch_size": 4,
        "ship_timeout_s": 1.0,
        "ship_backoff_max_s": 0.1,
        **overrides,
    }
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=f"127.0.0.1:{observer_port}",
        spool_dir=str(tmp_path / "spool"),
        drain_delay_s=0.0,
        grace_s=1.0,
        **fields,
    )
    return await build_server(settings, config=builtin_config(""))


async def send_requests(running: RunningServer, count: int, prefix: str = "ship") -> set[str]:
    async with aio.insecure_channel(running.address) as channel:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

        async def one(i: int) -> str:
            request = adapters_pb2.GenerateRequest(
                request_id=f"{prefix}-{i}",
                tenant=TENANT,
                stream=bool(i % 2),
                messages=[chat_pb2.ChatMessage(role="user", content=f"message {i}")],
            )
            async for _ in stub.Generate(request, timeout=5):
                pass
            return request.request_id

        return set(await asyncio.gather(*(one(i) for i in range(count))))


async def stored_request_ids(observer: RunningServer) -> list[str]:
    async with aio.insecure_channel(observer.address) as channel:
        stub = observer_pb2_grpc.ObserverServiceStub(channel)
        reply = await stub.ListObservations(
            observer_pb2.ListObservationsRequest(tenant=TENANT, limit=1000), timeout=5
        )
    return [o.request_id for o in reply.observations]


async def wait_until(predicate, within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        # Polls state that lives in another server (the observer's store): there is no event to wait on.
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
async def observer_port() -> AsyncIterator[int]:
    yield free_port()


@pytest.mark.parametrize("queue_size", [10_000, 2], ids=["queue", "overflowing-queue"])
async def test_observer_down_spool_then_up_delivers_everything_exactly_once(
    tmp_path: Path, observer_port: int, queue_size: int
):
    adapters = await start_adapters(tmp_path, observer_port, observation_queue_size=queue_size)
    observer: RunningServer | None = None
    try:
        shipper = adapters.parts.shipper
        sent = await send_requests(adapters, 30)

        async def all_spooled() -> bool:
            queued, spool_bytes = shipper.backlog
            return queued == 0 and spool_bytes > 0

        await wait_until(all_spooled)
        assert list((tmp_path / "spool").glob("*.spool"))

        observer = await start_observer(tmp_path, observer_port)

        async def delivered() -> bool:
            return shipper.backlog == (0, 0) and len(await stored_request_ids(observer)) >= len(sent)

        await wait_until(delivered, within_s=15)
        stored = await stored_request_ids(observer)
        assert sorted(stored) == sorted(sent), "every observation stored, none twice"
        assert not list((tmp_path / "spool").glob("*.spool")), "the spool is deleted after the acks"

        # Live traffic now goes straight through.
        more = await send_requests(adapters, 5, prefix="live")
        await wait_until(lambda: _count_at_least(observer, len(sent) + len(more)))
        assert sorted(await stored_request_ids(observer)) == sorted(sent | more)
    finally:
        await adapters.stop_now()
        if observer is not None:
            await observer.stop_now()


async def _count_at_least(observer: RunningServer, count: int) -> bool:
    return len(await stored_request_ids(observer)) >= count


async def test_drain_spools_what_the_observer_cannot_take_and_the_next_process_replays_it(
    tmp_path: Path, observer_port: int
):
    adapters = await start_adapters(tmp_path, observer_port)
    sent = await send_requests(adapters, 12)
    await adapters.drain()
    assert adapters.parts.shipper.backlog[0] == 0
    assert list((tmp_path / "spool").glob("*.spool")), "undelivered observations wait on disk"

    observer = await start_observer(tmp_path, observer_port)
    restarted = await start_adapters(tmp_path, observer_port)
    try:
        shipper = restarted.parts.shipper

        async def delivered() -> bool:
            return shipper.backlog == (0, 0) and len(await stored_request_ids(observer)) >= len(sent)

        await wait_until(delivered, within_s=15)
        assert sorted(await stored_request_ids(observer)) == sorted(sent)
    finally:
        await restarted.stop_now()
        await observer.stop_now()


async def test_drain_flushes_the_queue_to_a_reachable_observer(tmp_path: Path, observer_port: int):
    observer = await start_observer(tmp_path, observer_port)
    # A long interval keeps observations queued until the drain flushes them.
    adapters = await start_adapters(tmp_path, observer_port, ship_interval_s=30.0, ship_batch_size=1000)
    try:
        sent = await send_requests(adapters, 10)
        await adapters.drain()
        assert sorted(await stored_request_ids(observer)) == sorted(sent)
        assert not list((tmp_path / "spool").glob("*.spool"))
    finally:
        await observer.stop_now()


def _batch(*ids: str) -> observer_pb2.IngestRequest:
    return observer_pb2.IngestRequest(observations=[observer_pb2.Observation(observation_id=i) for i in ids])


def test_spool_replays_in_order_and_deletes_segments_only_after_commit(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_batch("a", "b"))
    spool.append(_batch("c"))
    request, end = spool.peek()
    assert [o.observation_id for o in request.observations] == ["a", "b"]
    # Not committed: the same batch again.
    assert spool.peek()[0] == request
    spool.commit(end)
    spool.append(_batch("d"))  # goes to a new segment: the first one is sealed for replay
    request, end = spool.peek()
    assert [o.observation_id for o in request.observations] == ["c"]
    spool.commit(end)
    request, end = spool.peek()
    assert [o.observation_id for o in request.observations] == ["d"]
    spool.commit(end)
    assert spool.peek() is None
    assert not spool.has_pending() and not list(tmp_path.glob("*.spool"))


def test_spool_survives_a_restart_and_ignores_a_torn_tail(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(_batch("a"))
    spool.close()
    segment = next(tmp_path.glob("*.spool"))
    with segment.open("ab") as handle:
        handle.write(struct.pack(">II", 1000, 0) + b"partial")  # a crash mid-write

    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.has_pending()
    request, end = reopened.peek()
    assert [o.observation_id for o in request.observations] == ["a"]
    reopened.commit(end)
    assert reopened.peek() is None and not list(tmp_path.glob("*.spool"))


def test_spool_refuses_batches_beyond_its_cap(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=64)
    spool.append(_batch("a"))
    with pytest.raises(SpoolFull):
        spool.append(_batch("b" * 100))


def test_encoded_observations_joined_are_the_ingest_request():
    # The shipper sends joined encodings as an IngestRequest: they must be exactly its wire form,
    # including observations whose length needs a multi-byte varint.
    observations = [
        observer_pb2.Observation(observation_id="a", tenant=TENANT, latency_ms=1.5),
        observer_pb2.Observation(observation_id="b", prompt_text="x" * 70_000),
        observer_pb2.Observation(),
    ]
    joined = b"".join(encode_observation(o) for o in observations)
    assert joined == observer_pb2.IngestRequest(observations=observations).SerializeToString()
    assert list(observer_pb2.IngestRequest.FromString(joined).observations) == observations
