"""What the audit trail costs an admin change: UpdateKey on the router with entries written to a real
observer (SQLite, or PostgreSQL with --database-url) against a standalone router logging them instead."""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from atp.router.v1 import admin_pb2, admin_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings

COMMON: dict[str, Any] = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1}


async def _time_updates(observer_addr: str, folder: Path, n: int) -> list[float]:
    router = await build_router(
        RouterSettings(
            **COMMON,
            observer_addr=observer_addr,
            reload_on_sighup=False,
            directory_path=str(folder / f"tenants-{bool(observer_addr)}.json"),
        ),
        config=builtin_config(""),
    )
    channel = open_channel(router.address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    actor = admin_pb2.Actor(key_id="key_bench", role="operator", tenant="ops")
    key = await admin.CreateKey(admin_pb2.CreateKeyRequest(tenant="acme", actor=actor))
    took = []
    for i in range(n):
        started = time.perf_counter()
        limits = admin_pb2.KeyLimits(requests_per_minute=i + 1)
        await admin.UpdateKey(admin_pb2.UpdateKeyRequest(key_id=key.key.key_id, limits=limits, actor=actor))
        took.append((time.perf_counter() - started) * 1000)
    await channel.close()
    await router.stop_now()
    return took


def _line(name: str, took: list[float]) -> str:
    p95 = statistics.quantiles(took, n=20)[-1]
    return f"{name:<28} median {statistics.median(took):6.2f} ms  p95 {p95:6.2f} ms  (n={len(took)})"


async def main(n: int, database_url: str) -> None:
    logging.getLogger("atp.audit").setLevel(logging.WARNING)  # the standalone router's entries: not timed I/O
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        observer = await build_observer(
            ObserverSettings(**COMMON, database_url=database_url, sqlite_path=str(folder / "obs.sqlite3")),
            config=builtin_config(""),
        )
        try:
            audited = await _time_updates(observer.address, folder, n)
            standalone = await _time_updates("", folder, n)
        finally:
            await observer.stop_now()
    store = "postgres" if database_url else "sqlite"
    print(_line(f"UpdateKey, audited ({store})", audited))
    print(_line("UpdateKey, log only", standalone))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300)
    # The observer creates its tables in that database: give it a scratch one.
    parser.add_argument("--database-url", default="", help="a scratch PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.database_url))
