"""The lifecycle kit: a component registered once is closed on every way out, against a real gRPC server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp_common.lifecycle import Component, Lifecycle, run_until_signal
from atp_common.server import RunningServer, open_lifecycle, start_server
from atp_common.settings import ServiceSettings


class Journal:
    """Components that write what happened to them, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def component(
        self,
        name: str,
        *,
        fail_start: bool = False,
        block_start: asyncio.Event | None = None,
        started: asyncio.Event | None = None,
    ) -> Component:
        async def start() -> None:
            self.events.append(f"start {name}")
            if started is not None:
                started.set()
            if block_start is not None:
                await block_start.wait()
            if fail_start:
                raise RuntimeError(f"{name} failed to start")

        async def drain() -> None:
            self.events.append(f"drain {name}")

        async def close() -> None:
            self.events.append(f"close {name}")

        return Component(name, start=start, drain=drain, close=close)

    def closed(self) -> list[str]:
        return [e.removeprefix("close ") for e in self.events if e.startswith("close ")]


def _settings() -> ServiceSettings:
    return ServiceSettings(port=0, drain_delay_s=0.05, grace_s=1.0, close_timeout_s=2.0)


async def _serve(journal: Journal) -> RunningServer[None]:
    settings = _settings()
    life = await open_lifecycle(settings)
    async with life.starting():
        for name in ("store", "buffer", "watch"):
            await life.add(journal.component(name))
        return await start_server(settings, [], life=life)


async def _refused(address: str) -> bool:
    async with aio.insecure_channel(address) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except aio.AioRpcError as error:
            return error.code() == grpc.StatusCode.UNAVAILABLE
    return False


async def test_a_start_failing_midway_closes_every_component_registered_before_it_and_itself():
    journal = Journal()
    life = Lifecycle(close_timeout_s=2.0)
    with pytest.raises(RuntimeError, match="buffer failed"):
        async with life.starting():
            await life.add(journal.component("store"))
            await life.add(journal.component("buffer", fail_start=True))
            await life.add(journal.component("never"))
    # Its close was registered before its start ran, so a half-started component is closed too.
    assert journal.closed() == ["buffer", "store"]
    assert "start never" not in journal.events
    assert life.closed
    with pytest.raises(RuntimeError, match="closing"):
        await life.add(journal.component("late"))


async def test_a_grpc_server_that_cannot_start_closes_what_started_before_it(tmp_path):
    journal = Journal()
    missing = str(tmp_path / "missing.pem")
    settings = ServiceSettings(port=0, drain_delay_s=0.0, tls_cert=missing, tls_key=missing)
    life = await open_lifecycle(settings)
    with pytest.raises(FileNotFoundError):
        async with life.starting():
            await life.add(journal.component("store"))
            await start_server(settings, [], life=life)
    assert journal.closed() == ["store"]


async def test_the_drain_stops_taking_work_first_then_closes_newest_first():
    journal = Journal()
    running = await _serve(journal)
    async with aio.insecure_channel(running.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        drain = asyncio.create_task(running.drain())
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        # NOT_SERVING during the propagation delay, while calls are still answered.
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await drain
    assert journal.events[3:] == [
        "drain watch",
        "drain buffer",
        "drain store",
        "close watch",
        "close buffer",
        "close store",
    ]
    assert await _refused(running.address)
    # A second drain (or a teardown's stop_now) changes nothing.
    await running.drain()
    await running.stop_now()
    assert journal.closed() == ["watch", "buffer", "store"]


async def test_cancelling_a_running_service_closes_every_component_without_draining():
    journal = Journal()
    running = await _serve(journal)
    task = asyncio.create_task(run_until_signal(running.life, {"port": running.port}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert journal.closed() == ["watch", "buffer", "store"]
    assert not any(e.startswith("drain") for e in journal.events)
    assert await _refused(running.address)


async def test_cancelling_a_start_in_progress_closes_what_was_registered():
    journal = Journal()
    life = Lifecycle(close_timeout_s=2.0)
    blocked, started = asyncio.Event(), asyncio.Event()

    async def build() -> None:
        async with life.starting():
            await life.add(journal.component("store"))
            await life.add(journal.component("directory", block_start=blocked, started=started))

    task = asyncio.create_task(build())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert journal.closed() == ["directory", "store"]


async def test_sigterm_drains_once_and_the_service_returns():
    journal = Journal()
    running = await _serve(journal)
    ready = asyncio.Event()
    task = asyncio.create_task(run_until_signal(running.life, {"port": running.port}, on_ready=ready.set))
    await ready.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 5)
    assert [e for e in journal.events if e.startswith("drain")] == [
        "drain watch",
        "drain buffer",
        "drain store",
    ]
    assert journal.closed() == ["watch", "buffer", "store"]


async def test_closing_is_bounded_and_a_failing_close_does_not_stop_the_others(caplog):
    closed: list[str] = []

    async def hang() -> None:
        await asyncio.sleep(60)

    async def fail() -> None:
        raise OSError("disk gone")

    life = Lifecycle(close_timeout_s=0.3)
    await life.add(Component("channel", close=lambda: closed.append("channel")))
    await life.add(Component("stuck queue", close=hang))
    await life.add(Component("broken log", close=fail))
    await life.add(Component("watch", close=lambda: closed.append("watch")))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="atp.lifecycle"):
        await life.close()
    assert time.monotonic() - started < 1.0
    # The budget was spent on the stuck queue: what comes after it is given up on, and said so.
    assert closed == ["watch"]
    messages = [r.getMessage() for r in caplog.records]
    assert "closing broken log failed" in messages
    assert "no time left to close channel; giving up on it" in messages
