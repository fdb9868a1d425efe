"""kill -9 of the adapters under 40 concurrent streams, five times: every reply and every cut stream stored once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.slow

CONFIG = textwrap.dedent(
    """
    providers:
      local: {type: local, tokens_per_second: 40}
    models:
      slow-echo: {provider: local, context_window: 8192}
    routes:
      auto: {candidates: [slow-echo]}
    tenants:
      local: {api_keys: [{hash: "sha256:%s"}]}
    """
) % ("0" * 64)
WORDS = "one two three four five six seven eight nine ten"
OK, PARTIAL = 1, 3
STREAMS = 40
KILLS = 5


class Load:
    """40 clients streaming back to back; each request's outcome as the client saw it."""

    def __init__(self) -> None:
        self.succeeded: list[str] = []
        self.cut: list[str] = []
        self.refused: list[str] = []
        self._counter = 0

    async def client(self, address: str, index: int, stop: asyncio.Event) -> None:
        async with aio.insecure_channel(address) as channel:
            stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
            while not stop.is_set():
                self._counter += 1
                request_id = f"kill-{index}-{self._counter}"
                request = adapters_pb2.GenerateRequest(
                    request_id=request_id,
                    tenant="local",
                    model="auto",
                    stream=True,
                    messages=[chat_pb2.ChatMessage(role="user", content=WORDS)],
                )
                # The decision id names the request in the observer's rows (the header's first field).
                decision_id = ""
                try:
                    async for response in stub.Generate(request, timeout=10):
                        decision_id = decision_id or response.header.decision_id
                except aio.AioRpcError:
                    if decision_id:
                        self.cut.append(decision_id)
                    else:
                        self.refused.append(request_id)
                    return
                self.succeeded.append(decision_id)


def _env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "atp.yaml"
    config.write_text(CONFIG)
    return {
        "ATP_CONFIG": str(config),
        "ATP_OBSERVER_SQLITE_PATH": str(tmp_path / "obs.sqlite3"),
        "ATP_OBSERVER_DRAIN_DELAY_S": "0",
        "ATP_ADAPTERS_SPOOL_DIR": str(tmp_path / "spool"),
        "ATP_ADAPTERS_ROUTER_ADDR": "127.0.0.1:9",
        "ATP_ADAPTERS_DRAIN_DELAY_S": "0",
        "ATP_ADAPTERS_GRACE_S": "5",
        # The default interval: what a kill used to lose waited up to this long in memory.
        "ATP_ADAPTERS_SHIP_INTERVAL_S": "0.5",
    }


async def _one_kill(env: dict[str, str], load: Load) -> None:
    adapters = await asyncio.to_thread(start_service, "adapters", env)
    stop = asyncio.Event()
    clients = [asyncio.create_task(load.client(adapters.address, i, stop)) for i in range(STREAMS)]
    # Long enough for several generations of streams, some finished within the last shipping interval.
    await asyncio.sleep(1.7)
    adapters.process.send_signal(signal.SIGKILL)
    adapters.process.wait(10)
    stop.set()
    await asyncio.gather(*clients)


def _stored(path: Path) -> list[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT observation_id, decision_id, status FROM observations").fetchall()


async def test_kill_9_under_40_streams_loses_no_observation_and_stores_none_twice(tmp_path: Path):
    env = _env(tmp_path)
    observer = start_service("observer", env)
    env["ATP_ADAPTERS_OBSERVER_ADDR"] = observer.address
    load = Load()
    survivor: ServiceProcess | None = None
    try:
        for _ in range(KILLS):
            await _one_kill(env, load)
        # A last start ships what the fifth kill left; its drain delivers everything before it exits.
        survivor = await asyncio.to_thread(start_service, "adapters", env)
        # The spool is replayed by a running process only (a drain leaves it for the next one).
        for _ in range(150):
            if not any((tmp_path / "spool").glob("*.spool")):
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(survivor.terminate, 20) == 0
        # A clean drain leaves no log segment behind (everything in it was acknowledged).
        assert list((tmp_path / "spool" / "log").glob("*.obslog")) == []
    finally:
        if survivor is not None and survivor.process.poll() is None:
            survivor.process.kill()
        assert await asyncio.to_thread(observer.terminate, 20) == 0

    rows = _stored(tmp_path / "obs.sqlite3")
    by_decision = Counter(decision_id for _, decision_id, _ in rows)
    assert [r for r, n in by_decision.items() if n > 1] == [], "an observation stored twice"
    status = {decision_id: status for _, decision_id, status in rows}
    assert len(load.succeeded) > 5 * STREAMS and len(load.cut) >= STREAMS, (
        len(load.succeeded),
        len(load.cut),
    )
    # Every reply that succeeded is stored, as a success.
    assert [r for r in load.succeeded if status.get(r) != OK] == []
    # Every stream cut by a kill has its observation (partial, or complete if it ended just before).
    assert [r for r in load.cut if r not in status] == []
    assert {status[r] for r in load.cut} <= {OK, PARTIAL}
    # Nothing stored as a success that the client did not get (or at least began) as one.
    ok_requests = {r for r, s in status.items() if s == OK}
    assert ok_requests - set(load.succeeded) <= set(load.cut)
