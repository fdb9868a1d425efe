"""What the exactly-once tests share: a steady observation source, a real observer process, counts in SQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_adapters.shipper import ObservationShipper
from tests.support.processes import ServiceProcess, start_service

TENANT = "acme"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def observation(observation_id: str, tenant: str = TENANT) -> observer_pb2.Observation:
    """A routed observation (it earns a reward event), started now."""
    obs = observer_pb2.Observation(
        observation_id=observation_id,
        request_id=f"r-{observation_id}",
        tenant=tenant,
        decision=chat_pb2.Decision(
            decision_id=f"d-{observation_id}", route="auto", policy="static", propensity=1.0
        ),
        model="local-small",
        provider="local",
        usage=chat_pb2.Usage(prompt_tokens=10, completion_tokens=5),
        cost_usd=0.001,
        latency_ms=20.0,
        status=observer_pb2.OBSERVATION_STATUS_OK,
        finish_reason="stop",
    )
    obs.started_at.GetCurrentTime()
    return obs


class SteadySource:
    """Submits `per_tick` observations to a shipper every `tick_s`, as an adapters replica under load does."""

    def __init__(self, shipper: ObservationShipper, prefix: str, *, per_tick: int = 10, tick_s: float = 0.01):
        self._shipper = shipper
        self._prefix = prefix
        self._per_tick = per_tick
        self._tick_s = tick_s
        self.sent: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"source-{self._prefix}")

    async def _run(self) -> None:
        while True:
            for _ in range(self._per_tick):
                observation_id = f"{self._prefix}-{len(self.sent)}"
                made = observation(observation_id)
                self._shipper.submit(made)
                self.sent.append(observation_id)
            await asyncio.sleep(self._tick_s)  # the pacing of the load, not a wait for readiness

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def wait_until(predicate: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Poll `predicate` (state in another process: there is no event to wait on) until true or time is up."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def stored_counts(dsn: str, field: str = "observation_id") -> dict[str, int]:
    """How many rows of `observations` carry each value of an Observation `field` (observation_id or
    request_id), read from each stored observation's payload."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT payload FROM observations", timeout=10)
    finally:
        await conn.close(timeout=5)
    return dict(Counter(getattr(observer_pb2.Observation.FromString(row[0]), field) for row in rows))


async def stored_total(dsn: str) -> int:
    """Rows in `observations`; -1 while the database is away."""
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return -1
    try:
        return await conn.fetchval("SELECT count(*) FROM observations", timeout=10)
    finally:
        await conn.close(timeout=5)


async def reward_counts(dsn: str) -> dict[str, int]:
    """Fresh (non-correction) reward events per decision."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        # Ingest's log rows: no corrections; their first packed array is the decision ids.
        rows = await conn.fetch("SELECT events FROM reward_log WHERE corrections IS NULL", timeout=10)
    finally:
        await conn.close(timeout=5)
    return dict(Counter(decision for row in rows for decision in orjson.loads(row[0])[0]))


def assert_exactly_once(sent: list[str], counts: dict[str, int]) -> None:
    """Every sent id stored, none twice, nothing stored that was not sent."""
    duplicated = {key: n for key, n in counts.items() if n != 1}
    missing = set(sent) - counts.keys()
    foreign = counts.keys() - set(sent)
    assert not duplicated, f"{len(duplicated)} stored more than once, e.g. {sorted(duplicated.items())[:5]}"
    assert not missing, f"{len(missing)} of {len(sent)} never stored, e.g. {sorted(missing)[:5]}"
    assert not foreign, f"{len(foreign)} stored that were never sent, e.g. {sorted(foreign)[:5]}"


def start_observer(dsn: str, port: int, **env: str) -> ServiceProcess:
    """`python -m atp_observer` on `port`, storing into `dsn`; returns once it logged ready."""
    return start_service(
        "observer",
        {
            "ATP_CONFIG": "",
            "ATP_OBSERVER_DATABASE_URL": dsn,
            "ATP_OBSERVER_PORT": str(port),
            "ATP_OBSERVER_METRICS_PORT": "0",
            "ATP_OBSERVER_DRAIN_DELAY_S": "0",
            "ATP_OBSERVER_GRACE_S": "2",
            "ATP_OBSERVER_RETRY_MAX_S": "0.3",
            **env,
        },
    )


def kill(service: ServiceProcess | None) -> None:
    """SIGKILL, for the crash scenarios and for cleanup after a failure."""
    if service is not None and service.process.poll() is None:
        service.process.kill()
        service.process.wait(10)


def print_log_tail(service: ServiceProcess | None, lines: int = 30) -> None:
    """The service's last log lines, shown by pytest when the test fails."""
    if service is not None:
        for line in service.lines[-lines:]:
            print(line)
