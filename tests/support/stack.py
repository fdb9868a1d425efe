"""The real adapters service with a gateway in front of it, in-process on loopback ports, for gateway tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings


async def until(predicate: Any, timeout_s: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` (a function, sync or async) until it returns something true, and return that;
    fail after `timeout_s` (state in another service: there is no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def unused_address() -> str:
    """A loopback address nobody listens on (an absent router routes on the configured order)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextlib.asynccontextmanager
async def adapters_and_gateway(
    config: AtpConfig,
    tmp_path: Path,
    *,
    observer_addr: str,
    router_addr: str = "",
    adapters: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> AsyncIterator[GatewayServer]:
    """Start the adapters, then a gateway on them; yield the gateway once it is ready; stop both."""
    adapters_server = await build_server(
        AdaptersSettings(
            port=0,
            metrics_port=None,
            router_addr=router_addr or unused_address(),
            observer_addr=observer_addr,
            spool_dir=str(tmp_path / "spool"),
            drain_delay_s=0,
            grace_s=1,
            **(adapters or {}),
        ),
        config=config,
    )
    try:
        settings = GatewaySettings(
            port=0,
            metrics_port=None,
            adapters_addr=adapters_server.address,
            observer_addr=observer_addr,
            drain_delay_s=0,
            grace_s=2,
            **(gateway or {}),
        )
        server = GatewayServer(settings, create_app(settings, config=config))
        await server.start()
        try:
            deadline = time.monotonic() + 5.0
            while not server.gateway.ready:
                if time.monotonic() > deadline:
                    raise AssertionError("the gateway did not become ready")
                await asyncio.sleep(0.01)
            yield server
        finally:
            await server.stop_now()
    finally:
        await adapters_server.stop_now()
