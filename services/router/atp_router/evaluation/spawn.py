"""`atp-eval --spawn`: start an observer and a router as real processes on free ports, with a config it writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from atp_common.config import AtpConfig

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Services:
    """Addresses of the spawned services."""

    router_addr: str
    observer_addr: str
    workdir: Path


def _ready_port(log_path: Path) -> int | None:
    """The port of the "ready" line in a JSON log, if it is there yet (a small file, read whole)."""
    with contextlib.suppress(FileNotFoundError):
        for line in log_path.read_bytes().splitlines():
            if b'"ready"' not in line:
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if event.get("event") == "ready":
                    return int(event["port"])
    return None


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-2000:]


async def _wait_ready(process: asyncio.subprocess.Process, log_path: Path, deadline: float) -> int:
    """The port from the service's "ready" log line, polling the log until `deadline`."""
    while time.monotonic() < deadline:
        port = _ready_port(log_path)
        if port is not None:
            return port
        if process.returncode is not None:
            raise RuntimeError(
                f"{log_path.stem} exited with {process.returncode} before ready:\n{_tail(log_path)}"
            )
        await asyncio.sleep(_POLL_S)
    raise TimeoutError(f"{log_path.stem} not ready within {READY_TIMEOUT_S}s (log: {log_path})")


async def _start(
    module: str, env: Mapping[str, str], workdir: Path
) -> tuple[asyncio.subprocess.Process, int]:
    log_path = workdir / f"{module}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=workdir,
        )
    try:
        port = await _wait_ready(process, log_path, time.monotonic() + READY_TIMEOUT_S)
    except BaseException:
        await _stop(process)
        raise
    return process, port


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the service drains), then SIGKILL if it has not exited in time."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def spawn_services(
    config: AtpConfig,
    *,
    snapshot_interval_s: float,
    seed: int | None = 0,
    workdir: str | None = None,
) -> AsyncIterator[Services]:
    """Run `python -m atp_observer` (SQLite in a temporary directory) and `python -m atp_router` (learning
    from it, publishing at most one snapshot per `snapshot_interval_s`) on port 0, until the block ends."""
    with tempfile.TemporaryDirectory(prefix="atp-eval-", dir=workdir) as tmp:
        directory = Path(tmp)
        config_path = directory / "atp.yaml"
        config_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        common = {
            "ATP_CONFIG": str(config_path),
            "ATP_LOG_JSON": "true",
            "ATP_LOG_LEVEL": "INFO",
            "ATP_TRACING": "false",
            "ATP_OTLP_ENDPOINT": "",
        }
        observer, observer_port = await _start(
            "atp_observer",
            {
                **common,
                "ATP_OBSERVER_PORT": "0",
                "ATP_OBSERVER_METRICS_PORT": "0",
                "ATP_OBSERVER_DATABASE_URL": "",
                "ATP_OBSERVER_SQLITE_PATH": str(directory / "observer.sqlite3"),
                "ATP_OBSERVER_DRAIN_DELAY_S": "0",
            },
            directory,
        )
        try:
            router_env = {
                **common,
                "ATP_ROUTER_PORT": "0",
                "ATP_ROUTER_METRICS_PORT": "0",
                "ATP_ROUTER_OBSERVER_ADDR": f"127.0.0.1:{observer_port}",
                "ATP_ROUTER_SNAPSHOT_MIN_INTERVAL_S": str(snapshot_interval_s),
                "ATP_ROUTER_DRAIN_DELAY_S": "0",
                "ATP_ROUTER_RELOAD_ON_SIGHUP": "false",
            }
            if seed is not None:
                router_env["ATP_ROUTER_SEED"] = str(seed)
            router, router_port = await _start("atp_router", router_env, directory)
            try:
                yield Services(f"127.0.0.1:{router_port}", f"127.0.0.1:{observer_port}", directory)
            finally:
                await _stop(router)
        finally:
            await _stop(observer)
