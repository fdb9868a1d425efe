"""The server kit: a grpc.aio server with health, reflection, error mapping, metrics and the drain sequence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from atp_common.heap import freeze_startup_heap
from atp_common.interceptors import ErrorInterceptor
from atp_common.settings import ServiceSettings

log = logging.getLogger("atp.server")

# Generous but bounded: a policy snapshot or an observation batch can be a few MB, never more.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC's default reconnect backoff grows to 120 s; a peer back from an outage must be found in seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Long-lived watch streams must not be cut by an idle timer.
    ("grpc.max_connection_idle_ms", 2**31 - 1),
    # Hot-path cost (issue 8): channelz keeps per-call statistics nobody reads here, and BDP probing
    # sends pings to size flow-control windows that loopback and small messages never fill.
    ("grpc.enable_channelz", 0),
    ("grpc.http2.bdp_probe", 0),
)


# The health name that liveness probes ask for. It stays SERVING through the drain, while "" (readiness)
# and every hosted service turn NOT_SERVING: a draining pod is alive and must not be restarted by its
# liveness probe before its in-flight calls have finished.
LIVENESS_SERVICE = "liveness"


class HealthServicer(health_aio.HealthServicer):
    """The library's asyncio health servicer, with LIVENESS_SERVICE left SERVING by the drain."""

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        # The library's shutdown marks every name NOT_SERVING and then ignores set(); its own _set still
        # notifies Watch streams, so liveness watchers see the process as alive.
        await self._set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """One gRPC service to host: how to add its servicer, and its full name from the proto descriptor."""

    add_to_server: Callable[[Any, aio.Server], None]
    servicer: Any
    full_name: str


Closer = Callable[[], Awaitable[None]]


@dataclass
class RunningServer:
    """A started server: its bound port, its health servicer and what must be closed after it stops."""

    server: aio.Server
    port: int
    health: HealthServicer
    settings: ServiceSettings
    service_names: tuple[str, ...]
    closers: list[tuple[str, Closer]] = field(default_factory=list)
    drain_hooks: list[Callable[[], None]] = field(default_factory=list)
    metrics_port: int | None = None
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _draining: bool = False

    @property
    def address(self) -> str:
        """host:port where clients reach this server."""
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1"
        return f"{host}:{self.port}"

    def add_closer(self, name: str, closer: Closer) -> None:
        """Register something to close after the server stopped (clients, queues, exporters), in order."""
        self.closers.append((name, closer))

    def on_drain(self, hook: Callable[[], None]) -> None:
        """Call `hook` as soon as the drain starts (e.g. to end endless watch streams before server.stop)."""
        self.drain_hooks.append(hook)

    async def set_serving(self, serving: bool) -> None:
        """Mark every hosted service (and the whole server, "") SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self.health.set(name, status)
        # Alive from the moment the server is bound, whatever readiness says.
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    @property
    def draining(self) -> bool:
        """True once the drain sequence has started."""
        return self._draining

    async def drain(self) -> None:
        """The drain sequence (DESIGN.md). Safe to call twice; the second call waits for the first."""
        if self._draining:
            await self._drained.wait()
            return
        self._draining = True
        settings = self.settings
        # 1. NOT_SERVING for good, so balancers and probes stop sending new work here.
        await self.health.enter_graceful_shutdown()
        # Endless streams (policy and reward watches) end now, so their peers reconnect elsewhere at once
        # and server.stop need not wait out the grace period for them.
        for hook in self.drain_hooks:
            try:
                hook()
            except Exception:
                log.exception("drain hook failed")
        log.info("draining", extra={"delay_s": settings.drain_delay_s, "grace_s": settings.grace_s})
        # 2. Give them time to notice before we refuse anything (requests still in transit are served).
        await asyncio.sleep(settings.drain_delay_s)
        # 3. Refuse new calls; in-flight calls (streams included) may finish within the grace period.
        await self.server.stop(settings.grace_s)
        # 4. Close clients, flush queues, stop exporters, under one bound, logging each failure.
        await close_all(self.closers, settings.close_timeout_s)
        log.info("stopped")
        self._drained.set()

    async def stop_now(self) -> None:
        """Stop without draining (tests' teardown after a test already drained, or a fatal start-up error)."""
        await self.server.stop(0)
        await close_all(self.closers, self.settings.close_timeout_s)
        self._drained.set()


async def close_all(closers: Sequence[tuple[str, Closer]], timeout_s: float) -> None:
    """Run each closer in order; the whole sequence is bounded by `timeout_s`."""

    async def run() -> None:
        for name, closer in closers:
            try:
                await closer()
            except Exception:
                log.exception("closing %s failed", name)

    try:
        await asyncio.wait_for(run(), timeout_s)
    except TimeoutError:
        log.error("closing took longer than %.1fs; giving up on the rest", timeout_s)


def _server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    cert = Path(settings.tls_cert).read_bytes()
    key = Path(settings.tls_key).read_bytes()
    ca = Path(settings.tls_ca).read_bytes() if settings.tls_ca else None
    # With a CA configured, clients must present a certificate it signed (mTLS).
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


async def start_server(
    settings: ServiceSettings,
    services: Iterable[ServiceRegistration],
    *,
    extra_interceptors: Sequence[aio.ServerInterceptor] = (),
) -> RunningServer:
    """Build and start a server hosting `services` plus health and reflection; returns once it is bound."""
    services = list(services)
    interceptors: list[aio.ServerInterceptor] = [*extra_interceptors, ErrorInterceptor()]
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import server_interceptor

        interceptors.insert(0, server_interceptor())
    server = aio.server(interceptors=interceptors, options=GRPC_OPTIONS)
    for registration in services:
        registration.add_to_server(registration.servicer, server)

    # The library's asyncio servicer: Watch streams push status changes without polling threads.
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(r.full_name for r in services)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )

    bind = f"{settings.host}:{settings.port}"
    credentials = _server_credentials(settings)
    port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
    await server.start()

    running = RunningServer(
        server=server, port=port, health=health_servicer, settings=settings, service_names=names
    )
    if settings.metrics_port is not None:
        from atp_common.metrics import start_metrics_server

        running.metrics_port = start_metrics_server(settings.host, settings.metrics_port)
    await running.set_serving(True)
    return running


async def serve(
    settings: ServiceSettings,
    build: Callable[[ServiceSettings], Awaitable[RunningServer]],
) -> None:
    """Run a service until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    running = await build(settings)
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Tests and `make run` wait for this line, never on sleeps.
    log.info(
        "ready",
        extra={"address": running.address, "port": running.port, "metrics_port": running.metrics_port},
    )
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    await running.drain()


def run_main(
    service: str, settings: ServiceSettings, build: Callable[[Any], Awaitable[RunningServer]]
) -> None:
    """The whole body of a gRPC service's `__main__`: logging, tracing when configured, then serve."""
    from atp_common.logs import configure_logging

    configure_logging(service, settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing(service, settings.otlp_endpoint)
    run_service(settings, build)


def run_service(
    settings: ServiceSettings, build: Callable[[ServiceSettings], Awaitable[RunningServer]]
) -> None:
    """Entry point body for `python -m atp_<service>`: uvloop, then serve."""
    try:
        import uvloop
    except (
        ImportError
    ):  # pragma: no cover - uvloop is a pinned dependency; this keeps other platforms working
        asyncio.run(serve(settings, build))
    else:
        uvloop.run(serve(settings, build))


@contextlib.asynccontextmanager
async def serving(server: RunningServer):  # type: ignore[no-untyped-def]
    """Test helper: yield a started server and stop it (without the drain delay) afterwards."""
    try:
        yield server
    finally:
        if not server.draining:
            await server.stop_now()
