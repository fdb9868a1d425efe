"""Drains seen by clients, against real processes: no resets, no 499 for a cancel nobody made, fast return."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServiceProcess, start_service
from tests.support.stack import until

pytestmark = pytest.mark.slow

API_KEY = "atp-drain-" + "k" * 24
CONFIG = (
    textwrap.dedent(
        """
    providers:
      fast: {type: local, tokens_per_second: 2000}
      slow: {type: local, tokens_per_second: 10}
    models:
      fast-echo: {provider: fast, context_window: 8192}
      slow-echo: {provider: slow, context_window: 8192}
    routes:
      auto: {candidates: [fast-echo]}
      slow: {candidates: [slow-echo]}
    tenants:
      local: {api_keys: [{hash: "sha256:%s"}]}
    """
    )
    % hashlib.sha256(API_KEY.encode()).hexdigest()
)
CLIENTS = 40
BODY = {"model": "auto", "messages": [{"role": "user", "content": "one two three four five six"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "atp.yaml"
    config.write_text(CONFIG)
    return {
        "ATP_CONFIG": str(config),
        "ATP_ADAPTERS_SPOOL_DIR": str(tmp_path / "spool"),
        "ATP_ADAPTERS_ROUTER_ADDR": "127.0.0.1:9",
        "ATP_ADAPTERS_OBSERVER_ADDR": "127.0.0.1:9",
        "ATP_GATEWAY_DIRECTORY_PATH": str(tmp_path / "tenants.json"),
        "ATP_GATEWAY_ROUTER_ADDR": "127.0.0.1:9",
        "ATP_GATEWAY_OBSERVER_ADDR": "127.0.0.1:9",
        **extra,
    }


class Outcomes:
    def __init__(self) -> None:
        self.ok = 0
        self.retryable = 0
        self.statuses: list[int] = []
        self.resets: list[str] = []
        self.bodies: list[str] = []

    def served_twice_each(self) -> bool:
        """As many replies as two per client: the connections are in use, not just opened."""
        return self.ok >= 2 * CLIENTS


async def _keep_alive_client(port: int, outcomes: Outcomes, body: dict, stop: asyncio.Event) -> None:
    """One keep-alive connection at a time, requests back to back, until refused or told to stop."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(limits=limits, timeout=20, headers=headers) as http:
        while not stop.is_set():
            try:
                reply = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            except httpx.ConnectError:
                return  # the listener closed: nothing was sent, a balancer would pick another replica
            except httpx.TransportError as exc:
                outcomes.resets.append(f"{exc!r} ({exc.__context__!r})")
                return
            outcomes.statuses.append(reply.status_code)
            if reply.status_code == 200:
                outcomes.ok += 1
                continue
            outcomes.bodies.append(reply.text)
            if reply.status_code == 503 and "retry-after" in reply.headers:
                outcomes.retryable += 1
            return


async def test_gateway_sigterm_under_40_keep_alive_clients_resets_no_connection(tmp_path: Path):
    env = _env(tmp_path, ATP_GATEWAY_DRAIN_DELAY_S="0.5", ATP_GATEWAY_GRACE_S="5")
    adapters = start_service("adapters", env)
    try:
        for _ in range(5):
            gateway = start_service("gateway", {**env, "ATP_GATEWAY_ADAPTERS_ADDR": adapters.address})
            outcomes = Outcomes()
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_keep_alive_client(gateway.port, outcomes, BODY, stop))
                for _ in range(CLIENTS)
            ]
            # The drain must catch connections that are in use: wait until they have carried replies
            # (a fixed pause could end before a slow host served more than one request per client).
            await until(outcomes.served_twice_each, timeout_s=20, what="replies before the drain")
            gateway.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*clients), 30)
            assert await asyncio.to_thread(gateway.process.wait, 30) == 0
            assert outcomes.resets == [], outcomes.resets[:3]
            assert outcomes.ok > CLIENTS
            assert set(outcomes.statuses) <= {200, 503}
            assert outcomes.retryable == outcomes.statuses.count(503)
    finally:
        adapters.terminate()


async def test_adapters_sigterm_cuts_no_request_with_499(tmp_path: Path):
    # A grace shorter than the slow route's replies: the adapters' stop cuts the calls still running.
    env = _env(tmp_path, ATP_ADAPTERS_DRAIN_DELAY_S="0.2", ATP_ADAPTERS_GRACE_S="0.3")
    adapters = start_service("adapters", env)
    gateway = start_service("gateway", {**env, "ATP_GATEWAY_ADAPTERS_ADDR": adapters.address})
    try:
        outcomes = Outcomes()
        stop = asyncio.Event()
        slow = {**BODY, "model": "slow"}
        clients = [
            asyncio.create_task(_keep_alive_client(gateway.port, outcomes, slow, stop))
            for _ in range(CLIENTS)
        ]
        await asyncio.sleep(0.3)
        adapters.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(adapters.process.wait, 30)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 30)
        assert 499 not in outcomes.statuses
        assert outcomes.statuses.count(503) >= 1, "the stop cut some calls"
        assert outcomes.retryable == outcomes.statuses.count(503)
        assert set(outcomes.statuses) <= {200, 503}
        for body in outcomes.bodies:
            assert "cancel" not in body.lower() and "127.0.0.1" not in body, body
    finally:
        gateway.terminate()
        adapters.terminate()


async def _poll(port: int, successes: list[float], succeeded: asyncio.Event, stop: asyncio.Event) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(timeout=5, headers=headers) as http:
        while not stop.is_set():
            try:
                reply = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)
            except httpx.TransportError:
                reply = None
            if reply is not None and reply.status_code == 200:
                successes.append(time.time())
                succeeded.set()
            await asyncio.sleep(0.01)


def _ready_at(service: ServiceProcess) -> float:
    """When the service logged its ready line (wall clock, as the poller records successes)."""
    stamp = service.events("ready")[0]["timestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_gateway_reaches_a_restarted_adapters_within_500ms_of_its_readiness(tmp_path: Path):
    env = _env(tmp_path, ATP_ADAPTERS_PORT=str(_free_port()), ATP_ADAPTERS_DRAIN_DELAY_S="0")
    adapters: ServiceProcess = start_service("adapters", env)
    gateway = start_service("gateway", {**env, "ATP_GATEWAY_ADAPTERS_ADDR": adapters.address})
    successes: list[float] = []
    succeeded = asyncio.Event()
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(gateway.port, successes, succeeded, stop))
    try:
        for _ in range(3):
            await asyncio.wait_for(succeeded.wait(), 10)
            adapters.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(adapters.process.wait, 10)
            # Down long enough for gRPC's reconnect backoff to grow as far as it is allowed to.
            await asyncio.sleep(3)
            successes.clear()
            succeeded.clear()
            adapters = await asyncio.to_thread(start_service, "adapters", env)
            await asyncio.wait_for(succeeded.wait(), 10)
            assert successes[0] - _ready_at(adapters) < 0.5, successes[0] - _ready_at(adapters)
    finally:
        stop.set()
        await poller
        gateway.terminate()
        adapters.terminate()
