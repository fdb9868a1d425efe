"""Real adapters serving requests while the observer is away: the spool holds them, PostgreSQL gets each once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from tests.support.ingest_support import (
    TENANT,
    assert_exactly_once,
    free_port,
    kill,
    print_log_tail,
    start_observer,
    stored_counts,
    stored_total,
    wait_until,
)
from tests.support.processes import ServiceProcess, start_service

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class RequestLoad:
    """A few clients sending Generate requests back to back to a real adapters process."""

    def __init__(self, address: str, clients: int = 4) -> None:
        self._address = address
        self._clients = clients
        self.served: list[str] = []
        self.failures: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: aio.Channel | None = None
        self._stopping = False

    def start(self) -> None:
        self._channel = aio.insecure_channel(self._address)
        stub = adapters_pb2_grpc.AdaptersServiceStub(self._channel)
        self._tasks = [asyncio.create_task(self._client(stub, i)) for i in range(self._clients)]

    async def _client(self, stub: adapters_pb2_grpc.AdaptersServiceStub, client: int) -> None:
        n = 0
        while not self._stopping:
            request_id = f"spool-{client}-{n}"
            n += 1
            request = adapters_pb2.GenerateRequest(
                request_id=request_id,
                tenant=TENANT,
                stream=bool(n % 2),
                messages=[chat_pb2.ChatMessage(role="user", content=f"message {n}")],
            )
            try:
                async for _ in stub.Generate(request, timeout=5):
                    pass
            except aio.AioRpcError as exc:
                self.failures.append(f"{request_id}: {exc.code().name} {exc.details()}")
                continue
            self.served.append(request_id)

    async def stop(self) -> None:
        """Let every client finish its request: one cut mid-stream would be stored yet not counted as served."""
        self._stopping = True
        await asyncio.gather(*self._tasks)
        self._tasks = []
        if self._channel is not None:
            await self._channel.close()


def spool_files(spool_dir: Path) -> list[Path]:
    return list(spool_dir.glob("*.spool"))


async def test_observer_unreachable_for_a_while_the_spool_delivers_each_request_once(
    private_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    spool_dir = tmp_path / "spool"
    observer: ServiceProcess | None = start_observer(private_dsn, port)
    adapters: ServiceProcess | None = None
    load: RequestLoad | None = None
    try:
        adapters = start_service(
            "adapters",
            {
                "ATP_CONFIG": "",
                "ATP_ADAPTERS_METRICS_PORT": "0",
                # No router: the adapters route with the configuration's static policy.
                "ATP_ADAPTERS_ROUTER_ADDR": f"127.0.0.1:{free_port()}",
                "ATP_ADAPTERS_OBSERVER_ADDR": f"127.0.0.1:{port}",
                "ATP_ADAPTERS_SPOOL_DIR": str(spool_dir),
                "ATP_ADAPTERS_SHIP_INTERVAL_S": "0.02",
                "ATP_ADAPTERS_SHIP_BATCH_SIZE": "50",
                "ATP_ADAPTERS_SHIP_TIMEOUT_S": "1",
                "ATP_ADAPTERS_SHIP_BACKOFF_MAX_S": "0.2",
                "ATP_ADAPTERS_DRAIN_DELAY_S": "0",
                "ATP_ADAPTERS_GRACE_S": "2",
            },
        )
        # Bounded as a whole, so that a stuck await fails with its traceback instead of hanging.
        async with asyncio.timeout(60):
            load = RequestLoad(adapters.address)
            load.start()
            await wait_until(lambda: _at_least(private_dsn, 100), 10, "observations flowing")

            # The observer goes away (drained, as on a rolling restart) while the adapters keep serving.
            assert await asyncio.to_thread(observer.terminate, 10) == 0
            away_from = len(load.served)
            await wait_until(lambda: _true(bool(spool_files(spool_dir))), 5, "the adapters spooling to disk")
            await wait_until(
                lambda: _true(len(load.served) > away_from + 300), 10, "requests served meanwhile"
            )

            observer = await asyncio.to_thread(start_observer, private_dsn, port)
            back_at = len(load.served)
            await wait_until(lambda: _at_least(private_dsn, back_at), 15, "the spool replayed")
            await load.stop()
            assert not load.failures, f"requests failed without the observer: {load.failures[:3]}"

            await wait_until(lambda: _at_least(private_dsn, len(load.served)), 15, "every observation stored")
            await wait_until(lambda: _true(not spool_files(spool_dir)), 5, "the spool emptied")
            assert_exactly_once(load.served, await stored_counts(private_dsn, "request_id"))
            by_observation = await stored_counts(private_dsn)
            assert len(by_observation) == len(load.served) and set(by_observation.values()) == {1}
    except BaseException:
        print_log_tail(observer)
        print_log_tail(adapters)
        raise
    finally:
        if load is not None:
            await load.stop()
        if adapters is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(adapters.terminate, 10)
        kill(adapters)
        kill(observer)


async def _at_least(dsn: str, count: int) -> bool:
    return await stored_total(dsn) >= count


async def _true(value: bool) -> bool:
    return value
