"""A router, adapters and gateway in process sharing one tenant directory, for the per-key policy tests."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from atp_adapters.server import AdaptersParts
from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.server import RunningServer
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.stack import until, unused_address


@dataclass
class KeyStack:
    adapters: RunningServer[AdaptersParts]
    url: str

    def client(self, key: str, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"authorization": f"Bearer {key}", **headers}, timeout=10
        )


@contextlib.asynccontextmanager
async def key_stack(
    raw: dict[str, Any], backend: str, redis_url: str, tmp_path: Path, *, poll_s: float = 0.05
) -> AsyncIterator[KeyStack]:
    """Router, adapters and a gateway sharing one directory: Redis (and Redis counters) when `backend` is
    "redis", else one local file (and the adapters' in-process limiter). The gateway and the adapters poll
    it every `poll_s`."""
    shared: dict[str, Any] = {
        "redis_url": redis_url if backend == "redis" else "",
        "redis_prefix": f"t{secrets.token_hex(6)}:",
        "directory_path": str(tmp_path / "tenants.json"),
        "directory_poll_s": poll_s,
    }
    config = AtpConfig.model_validate(raw)
    common = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1}
    router = await build_router(
        RouterSettings(
            **common,
            observer_addr="",
            reload_on_sighup=False,
            snapshot_min_interval_s=0,
            **{k: v for k, v in shared.items() if k != "directory_poll_s"},
        ),
        config=config,
    )
    nowhere = unused_address()
    adapters = await build_adapters(
        AdaptersSettings(
            **common,
            router_addr=router.address,
            observer_addr=nowhere,
            spool_dir=str(tmp_path / "spool"),
            **shared,
        ),
        config=config,
    )
    settings = GatewaySettings(
        **common, adapters_addr=adapters.address, router_addr=router.address, observer_addr=nowhere, **shared
    )
    gateway = GatewayServer(settings, create_app(settings, config=config))
    await gateway.start()
    try:
        await until(lambda: gateway.gateway.ready, what="gateway ready")
        yield KeyStack(adapters, f"http://127.0.0.1:{gateway.port}")
    finally:
        await gateway.stop_now()
        await adapters.stop_now()
        await router.stop_now()
