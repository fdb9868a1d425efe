"""Drain on SIGTERM and routing without the router, against real service processes."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from tests.support.processes import running_services, start_service

pytestmark = pytest.mark.slow

SLOW_CONFIG = textwrap.dedent(
    """
    providers:
      local: {type: local, tokens_per_second: 20}
    models:
      slow-echo: {provider: local, context_window: 8192}
    routes:
      auto: {candidates: [slow-echo]}
    tenants:
      local: {api_keys: [{hash: "sha256:%s"}]}
    """
) % ("0" * 64)
DRAIN_ENV = {"DRAIN_DELAY_S": "0.5", "GRACE_S": "10"}
WORDS = "one two three four five six seven eight nine ten eleven twelve"


def _env(tmp_path, config: str = SLOW_CONFIG, **extra: str) -> dict[str, str]:
    path = tmp_path / "atp.yaml"
    path.write_text(config)
    env = {"ATP_CONFIG": str(path), "ATP_OBSERVER_SQLITE_PATH": str(tmp_path / "obs.sqlite3")}
    env["ATP_ADAPTERS_SPOOL_DIR"] = str(tmp_path / "spool")
    for service in ("ROUTER", "OBSERVER", "ADAPTERS"):
        for key, value in DRAIN_ENV.items():
            env[f"ATP_{service}_{key}"] = value
    env.update(extra)
    return env


async def _status(address: str) -> int:
    async with aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return reply.status


async def _wait_not_serving(address: str, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if await _status(address) == health_pb2.HealthCheckResponse.NOT_SERVING:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{address} still SERVING after {within_s}s")


def _request(stream: bool = True) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        tenant="local",
        model="auto",
        stream=stream,
        messages=[chat_pb2.ChatMessage(role="user", content=WORDS)],
    )


async def test_adapters_drain_finishes_stream_refuses_new_work_and_exits_zero(tmp_path):
    with running_services(["observer", "router", "adapters"], _env(tmp_path)) as services:
        adapters = services["adapters"]
        async with aio.insecure_channel(adapters.address) as channel:
            call = adapters_pb2_grpc.AdaptersServiceStub(channel).Generate(_request(), timeout=30)
            first = await call.read()
            assert first.header.model == "slow-echo"
            adapters.process.send_signal(15)
            assert await _wait_not_serving(adapters.address, 0.4) < 0.4
            await asyncio.sleep(0.7)  # past the drain delay
            async with aio.insecure_channel(adapters.address) as fresh:
                with pytest.raises(aio.AioRpcError) as refused:
                    await adapters_pb2_grpc.AdaptersServiceStub(fresh).ListModels(
                        adapters_pb2.ListModelsRequest(), timeout=2
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            text = "".join(d.content for d in first.deltas)
            completion = None
            while (message := await call.read()) is not aio.EOF:
                text += "".join(d.content for d in message.deltas)
                if message.HasField("completion"):
                    completion = message.completion
                assert not message.HasField("error")
            assert completion is not None and WORDS in text
        assert adapters.process.wait(15) == 0


async def test_router_drain_ends_watch_streams_cleanly_and_exits_zero(tmp_path):
    router = start_service("router", _env(tmp_path))
    try:
        async with aio.insecure_channel(router.address) as channel:
            watch = router_pb2_grpc.RouterServiceStub(channel).WatchPolicy(
                router_pb2.WatchPolicyRequest(replica_id="test"), timeout=30
            )
            first = await watch.read()
            assert first.snapshot.version >= 1
            router.process.send_signal(15)
            assert await _wait_not_serving(router.address, 0.4) < 0.4
            while await watch.read() is not aio.EOF:
                pass
            assert await watch.code() == grpc.StatusCode.OK
        assert router.process.wait(15) == 0
    finally:
        router.terminate()


async def test_observer_drain_commits_an_ingest_in_flight_and_exits_zero(tmp_path):
    observer = start_service("observer", _env(tmp_path))
    try:
        async with aio.insecure_channel(observer.address) as channel:
            stub = observer_pb2_grpc.ObserverServiceStub(channel)
            queue: asyncio.Queue = asyncio.Queue()

            async def batches():
                while (batch := await queue.get()) is not None:
                    yield batch

            now = Timestamp()
            now.GetCurrentTime()

            def batch(n: int) -> observer_pb2.IngestRequest:
                return observer_pb2.IngestRequest(
                    observations=[
                        observer_pb2.Observation(
                            observation_id=f"obs-{n}-{i}",
                            tenant="local",
                            model="slow-echo",
                            status=observer_pb2.OBSERVATION_STATUS_OK,
                            decision=chat_pb2.Decision(decision_id=f"d-{n}-{i}", route="auto"),
                            started_at=now,
                            finished_at=now,
                        )
                        for i in range(5)
                    ]
                )

            call = stub.Ingest(batches(), timeout=30)
            await queue.put(batch(1))
            observer.process.send_signal(15)
            assert await _wait_not_serving(observer.address, 0.4) < 0.4
            await queue.put(batch(2))
            await queue.put(None)
            reply = await call
            assert reply.stored == 10
        assert observer.process.wait(15) == 0
    finally:
        observer.terminate()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_requests_keep_flowing_without_the_router_and_a_new_router_reaches_every_adapters(tmp_path):
    port = _free_port()
    fast = SLOW_CONFIG.replace("tokens_per_second: 20", "tokens_per_second: 0")
    env = _env(tmp_path, fast, ATP_ROUTER_PORT=str(port))
    with running_services(["observer", "router", "adapters"], env) as services:
        wiring = {
            "ATP_ADAPTERS_ROUTER_ADDR": services["router"].address,
            "ATP_ADAPTERS_OBSERVER_ADDR": services["observer"].address,
            "ATP_ADAPTERS_SPOOL_DIR": str(tmp_path / "spool-2"),
        }
        second = start_service("adapters", {**env, **wiring})
        try:
            replicas = [services["adapters"], second]
            channels = [aio.insecure_channel(replica.address) for replica in replicas]
            stubs = [adapters_pb2_grpc.AdaptersServiceStub(channel) for channel in channels]

            async def generate_ok(stub) -> None:
                messages = [m async for m in stub.Generate(_request(stream=False), timeout=10)]
                assert messages[-1].HasField("completion")

            for stub in stubs:
                await generate_ok(stub)
            assert services["router"].terminate() == 0
            for _ in range(5):
                for stub in stubs:
                    await generate_ok(stub)

            # A restarted router with a new route: its snapshot must reach every running adapters process.
            (tmp_path / "atp.yaml").write_text(
                fast.replace("routes:\n", "routes:\n  fresh: {candidates: [slow-echo]}\n")
            )
            services["router"] = start_service("router", env)
            for replica, stub in zip(replicas, stubs, strict=True):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    listed = await stub.ListModels(adapters_pb2.ListModelsRequest(), timeout=5)
                    if any(m.id == "fresh" for m in listed.models):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(
                        f"the new router's snapshot never reached adapters at {replica.address}"
                    )
                await generate_ok(stub)
            for channel in channels:
                await channel.close()
        finally:
            assert second.terminate() == 0
