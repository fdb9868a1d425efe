"""The server kit: a grpc.aio server with health, reflection, error mapping, metrics and the drain sequence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from atp_common.errors import StartupError
from atp_common.interceptors import ErrorInterceptor
from atp_common.lifecycle import (
    Component,
    Lifecycle,
    ServiceLife,
    exit_when_unable_to_start,
    open_lifecycle,
    run_until_signal,
)
from atp_common.settings import ServiceSettings

log = logging.getLogger("atp.server")

# Generous but bounded: a policy snapshot or an observation batch can be a few MB, never more.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
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
    # Hot-path cost: channelz keeps per-call statistics nobody reads here, and BDP probing
    # sends pings to size flow-control windows that loopback and small messages never fill.
    ("grpc.enable_channelz", 0),
    ("grpc.http2.bdp_probe", 0),
)

# gRPC binds with SO_REUSEPORT by default, so a second process started on a taken port joined the first
# and the kernel split the calls between them (two adapters meant two sets of in-process limits). A
# listener is one process's: binding a taken port fails.
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (*GRPC_OPTIONS, ("grpc.so_reuseport", 0))


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


PartsT = TypeVar("PartsT")
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class RunningServer(Generic[PartsT]):
    """A started server: its bound port, its health servicer, the lifecycle that owns everything it
    started, and `parts`, the service's live components for tests and diagnostics."""

    server: aio.Server
    port: int
    health: HealthServicer
    settings: ServiceSettings
    service_names: tuple[str, ...]
    life: Lifecycle
    parts: PartsT
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        """host:port where clients reach this server."""
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1"
        return f"{host}:{self.port}"

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
        return self.life.draining

    async def drain(self) -> None:
        """The drain sequence (see `_stop_listening`). Safe to call twice; the second call waits."""
        await self.life.drain()

    async def stop_now(self) -> None:
        """Stop without draining (tests' teardown, a fatal start-up error, cancellation)."""
        await self.life.close()

    async def _stop_taking_work(self) -> None:
        # 1. NOT_SERVING for good, so balancers and probes stop sending new work here. The components'
        #    own drain hooks run right after (endless watch streams end, so their peers reconnect
        #    elsewhere at once and server.stop need not wait out the grace period for them).
        await self.health.enter_graceful_shutdown()

    async def _stop_listening(self) -> None:
        settings = self.settings
        if not self.life.draining:
            await self.server.stop(0)
            return
        log.info("draining", extra={"delay_s": settings.drain_delay_s, "grace_s": settings.grace_s})
        # 2. Give them time to notice before we refuse anything (requests still in transit are served).
        await asyncio.sleep(settings.drain_delay_s)
        # 3. Refuse new calls; in-flight calls (streams included) may finish within the grace period.
        #    4. follows in the lifecycle: clients, queues and exporters close under one bound.
        await self.server.stop(settings.grace_s)


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


@overload
async def start_server(
    settings: ServiceSettings,
    services: Iterable[ServiceRegistration],
    *,
    life: ServiceLife | None = None,
    extra_interceptors: Sequence[aio.ServerInterceptor] = (),
) -> RunningServer[None]: ...


@overload
async def start_server(
    settings: ServiceSettings,
    services: Iterable[ServiceRegistration],
    *,
    parts: PartsT,
    life: ServiceLife | None = None,
    extra_interceptors: Sequence[aio.ServerInterceptor] = (),
) -> RunningServer[PartsT]: ...


async def start_server(
    settings: ServiceSettings,
    services: Iterable[ServiceRegistration],
    *,
    parts: Any = None,
    life: ServiceLife | None = None,
    extra_interceptors: Sequence[aio.ServerInterceptor] = (),
) -> RunningServer[Any]:
    """Start a server hosting `services` plus health and reflection as the last component of `life` (a
    fresh one when not given); returns once it is bound and every hosted service is SERVING."""
    life = life if life is not None else await open_lifecycle(settings)
    async with life.starting():
        services = list(services)
        interceptors: list[aio.ServerInterceptor] = [*extra_interceptors, ErrorInterceptor()]
        if settings.tracing or settings.otlp_endpoint:
            from atp_common.telemetry import server_interceptor

            interceptors.insert(0, server_interceptor())
        server = aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
        for registration in services:
            registration.add_to_server(registration.servicer, server)

        # The library's asyncio servicer: Watch streams push status changes without polling threads.
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = tuple(r.full_name for r in services)
        reflection.enable_server_reflection(
            (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )

        bind = f"{settings.host}:{settings.port}"
        credentials = _server_credentials(settings)
        try:
            port = (
                server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
            )
        except RuntimeError as exc:  # grpc's only word for a failed bind
            raise StartupError.unbound(bind, f"is the port taken? ({exc})") from exc
        running = RunningServer(
            server=server,
            port=port,
            health=health_servicer,
            settings=settings,
            service_names=names,
            life=life,
            parts=parts,
            metrics_port=life.metrics_port,
        )
        await life.add(
            Component(
                "grpc server",
                start=server.start,
                drain=running._stop_taking_work,
                close=running._stop_listening,
                bounded=False,
            )
        )
        await running.set_serving(True)
    return running


async def serve(
    settings: SettingsT,
    build: Callable[[SettingsT], Awaitable[RunningServer[Any]]],
) -> None:
    """Run a service until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    running = await build(settings)
    # Tests and `make run` wait for this line, never on sleeps.
    ready = {"address": running.address, "port": running.port, "metrics_port": running.metrics_port}
    await run_until_signal(running.life, ready)


def run_main(
    service: str, settings: SettingsT, build: Callable[[SettingsT], Awaitable[RunningServer[Any]]]
) -> None:
    """The whole body of a gRPC service's `__main__`: logging, tracing when configured, then serve."""
    from atp_common.logs import configure_logging

    configure_logging(service, settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing(service, settings.otlp_endpoint)
    with exit_when_unable_to_start(service):
        run_service(settings, build)


def run_service(settings: SettingsT, build: Callable[[SettingsT], Awaitable[RunningServer[Any]]]) -> None:
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
async def serving(server: RunningServer[PartsT]) -> AsyncIterator[RunningServer[PartsT]]:
    """Test helper: yield a started server and stop it (without the drain delay) afterwards."""
    try:
        yield server
    finally:
        await server.stop_now()
