"""ATP_GATEWAY_WORKERS > 1: worker processes sharing one port, their metrics merged, drained together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from atp_common.errors import StartupError
from atp_common.lifecycle import Component, Lifecycle, run_until_signal
from atp_gateway.settings import GatewaySettings

log = logging.getLogger("atp.gateway")

__all__ = ["supervise"]

# prometheus_client's multiprocess mode reads this variable when it is imported (in each worker).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_START_TIMEOUT_S = 60.0
_POLL_S = 0.2
# A worker that dies is restarted, but never more often than this, so a crash loop cannot spin.
_RESTART_DELAY_S = 1.0
# Beyond the drain delay and the grace: closing channels and the lifespan's shutdown.
_EXIT_MARGIN_S = 10.0


def _worker_main(settings: GatewaySettings, ready: Connection) -> None:
    """Body of a worker process (spawned: a fresh interpreter, no state inherited from the supervisor)."""
    import uvloop

    from atp_common.logs import configure_logging
    from atp_gateway.serve import serve_worker

    configure_logging("gateway", settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("gateway", settings.otlp_endpoint)

    def on_ready(port: int) -> None:
        ready.send(port)
        ready.close()

    uvloop.run(serve_worker(settings, on_ready))


def _reserve(host: str, port: int) -> socket.socket:
    # Bound with SO_REUSEPORT but never listening: it holds the port (and resolves port 0) for the
    # workers, which bind the same port, while workers come and go. It never receives a connection.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # SO_REUSEPORT would also share a port another process holds the same way (a second gateway started
    # on it would silently split its traffic): a plain bind first proves the port free.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError.unbound(f"{host}:{port}", exc.strerror or str(exc)) from exc
        port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Workers:
    """The worker processes of one supervisor."""

    def __init__(self, settings: GatewaySettings, port: int):
        self._context = multiprocessing.get_context("spawn")
        self._count = settings.workers
        self._settings = settings.model_copy(update={"port": port, "workers": 1, "metrics_port": None})
        self.processes: list[BaseProcess] = []
        self.killed = False

    def start_one(self) -> tuple[BaseProcess, Connection]:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main, args=(self._settings, writer), name="atp-gateway-worker", daemon=False
        )
        process.start()
        writer.close()
        self.processes.append(process)
        return process, reader

    async def wait_ready(self, process: BaseProcess, reader: Connection, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        try:
            while not reader.poll():
                if not process.is_alive():
                    raise RuntimeError(f"gateway worker {process.pid} exited during start-up")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway worker {process.pid} not ready in {timeout_s:.0f}s")
                await asyncio.sleep(0.02)
            reader.recv()
        except EOFError:
            raise RuntimeError(f"gateway worker {process.pid} exited during start-up") from None
        finally:
            reader.close()

    async def start_all(self) -> None:
        """Start `workers` processes and wait until each listens."""
        started = [self.start_one() for _ in range(self._count)]
        for process, reader in started:
            await self.wait_ready(process, reader, _START_TIMEOUT_S)

    async def restart_dead(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: replace a worker that died (at most once per _RESTART_DELAY_S)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _POLL_S)
            for process in list(self.processes):
                if process.is_alive() or stop.is_set():
                    continue
                log.error("gateway worker %s exited with %s; restarting it", process.pid, process.exitcode)
                self.processes.remove(process)
                _mark_dead(process.pid)
                await asyncio.sleep(_RESTART_DELAY_S)
                if not stop.is_set():
                    await self.wait_ready(*self.start_one(), _START_TIMEOUT_S)

    async def stop_all(self) -> None:
        """Every worker drains in parallel: readiness fails everywhere at once, then each waits out the
        delay, stops accepting and lets its in-flight requests finish within the grace period."""
        settings = self._settings
        log.info("draining", extra={"delay_s": settings.drain_delay_s, "grace_s": settings.grace_s})
        self.signal_all(signal.SIGTERM)
        budget = settings.drain_delay_s + settings.grace_s + _EXIT_MARGIN_S
        if not await self.wait_all(budget):
            log.error("gateway workers still running after %.0fs; killing them", budget)
            self.signal_all(signal.SIGKILL)
            await self.wait_all(5.0)
            self.killed = True
        log.info("workers stopped", extra={"worker_exit_codes": self.exit_codes})

    @property
    def exit_codes(self) -> list[int | None]:
        """Each worker's exit code (None while it runs)."""
        return [p.exitcode for p in self.processes]

    def signal_all(self, sig: int) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    async def wait_all(self, timeout_s: float) -> bool:
        """Wait for every worker to exit; False when some were still running after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while any(p.is_alive() for p in self.processes):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    from prometheus_client import multiprocess

    # Its live gauges (in flight, WebSockets) stop counting; its counters and histograms stay summed.
    multiprocess.mark_process_dead(pid)


async def supervise(settings: GatewaySettings) -> None:
    """Run `settings.workers` worker processes on one port until SIGTERM or SIGINT, then drain them all.

    Each worker is a whole gateway (its own event loop, channels and key store) bound to the port with
    SO_REUSEPORT, so the kernel spreads connections across them. Metrics use prometheus_client's
    multiprocess mode: every worker writes its values to files in a private directory, and this process
    serves the merged view on the metrics port. On SIGTERM every worker runs the drain sequence at once
    (each one's /readyz answers 503 from the first moment); this process exits when they all have.
    """
    life = Lifecycle(settings.close_timeout_s)
    try:
        async with life.starting():
            directory = tempfile.mkdtemp(prefix="atp-gateway-metrics-")
            await life.add(Component("metrics directory", close=partial(_remove, directory)))
            os.environ[MULTIPROC_ENV] = directory
            holder = _reserve(settings.host, settings.port)
            await life.add(Component("reserved port", close=holder.close))
            port = holder.getsockname()[1]
            metrics_port = await _merged_metrics(life, settings, directory)
            workers = _Workers(settings, port)
            await life.add(
                Component("workers", start=workers.start_all, close=workers.stop_all, bounded=False)
            )
        ready = {
            "address": f"http://{settings.host}:{port}",
            "port": port,
            "metrics_port": metrics_port,
            "workers": settings.workers,
            "worker_pids": [p.pid for p in workers.processes],
        }
        # Tests and `make run` wait for the "ready" line, never on sleeps.
        await run_until_signal(life, ready, supervise=workers.restart_dead)
    except StartupError:
        raise
    except RuntimeError:
        log.exception("gateway workers failed")
        raise SystemExit(1) from None
    if workers.killed or any(code != 0 for code in workers.exit_codes):
        raise SystemExit(1)


async def _merged_metrics(life: Lifecycle, settings: GatewaySettings, directory: str) -> int | None:
    if settings.metrics_port is None:
        return None
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from atp_common.metrics import start_metrics_server

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    listener = start_metrics_server(settings.host, settings.metrics_port, registry)
    await life.add(Component("metrics listener", close=listener.close))
    return listener.port


def _remove(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
