"""Running the gateway under uvicorn with ATP's drain sequence instead of uvicorn's signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial

import uvicorn
from fastapi import FastAPI

from atp_common.errors import StartupError
from atp_common.lifecycle import Component, open_lifecycle, run_until_signal
from atp_gateway.app import create_app
from atp_gateway.edge import EdgeState, edge_protocol
from atp_gateway.gateway import Gateway
from atp_gateway.settings import GatewaySettings

log = logging.getLogger("atp.gateway")

__all__ = ["GatewayServer", "serve"]


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers (ours drain first), reporting when its listener is up."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Worker processes each bind the same port; the kernel spreads new connections across them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError.unbound(f"{host}:{port}", exc.strerror or str(exc)) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class GatewayServer:
    """The gateway app on a real socket. `start()` returns once it listens; `drain()` runs the sequence."""

    def __init__(self, settings: GatewaySettings, app: FastAPI | None = None, *, reuse_port: bool = False):
        self.settings = settings
        self._reuse_port = reuse_port
        self.app = app if app is not None else create_app(settings)
        self.gateway: Gateway = self.app.state.gateway
        self.edge = EdgeState()
        config = uvicorn.Config(
            self.app,
            # uvicorn's httptools protocol with the edge's limits on heads, connections and requests.
            http=edge_protocol(settings.edge_limits, self.edge),
            ws="websockets-sansio",
            lifespan="on",
            # No per-request log line on the hot path; metrics count requests instead.
            access_log=False,
            log_config=None,
            server_header=False,
            # Frames between our limit and twice it get a polite error frame from the app; beyond that
            # the protocol layer closes with 1009 before buffering more.
            ws_max_size=2 * settings.ws_max_message_bytes,
            timeout_keep_alive=int(settings.keep_alive_s),
            # uvicorn's annotation says int; it waits with asyncio, so fractional seconds work.
            timeout_graceful_shutdown=settings.grace_s,  # type: ignore[arg-type]
        )
        self._server = _Uvicorn(config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind (port 0 picks a free port), start the app's lifespan and listen."""
        self._socket = _bind(self.settings.host, self.settings.port, self._reuse_port)
        self.port = self._socket.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="uvicorn")
        listening = asyncio.create_task(self._server.listening.wait())
        await asyncio.wait((self._task, listening), return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            # uvicorn ended during start-up (the lifespan failed): surface its error.
            await self._task
            raise RuntimeError("the gateway failed to start")

    async def drain(self) -> None:
        """ATP's drain sequence, bounded by drain_delay_s + grace_s."""
        settings = self.settings
        gateway = self.gateway
        # 1. /readyz answers 503 from now on, so balancers stop sending new work here.
        gateway.begin_drain()
        # Every reply from now on says `Connection: close`, so keep-alive clients reconnect elsewhere
        # instead of sending on a connection that the end of the drain will close under them.
        self.edge.begin_drain()
        log.info("draining", extra={"delay_s": settings.drain_delay_s, "grace_s": settings.grace_s})
        # 2. Give them time to notice; requests still in transit are served meanwhile.
        await asyncio.sleep(settings.drain_delay_s)
        deadline = time.monotonic() + settings.grace_s
        # 3. Refuse new requests (503 with Retry-After, Connection: close) while still accepting for a
        #    moment: clients told to come back later stop connecting, so closing the listener then resets
        #    no connection waiting in its backlog.
        gateway.stop_new_work()
        self.edge.stop()
        await asyncio.sleep(min(settings.drain_refuse_s, max(0.0, deadline - time.monotonic())))
        for server in getattr(self._server, "servers", []):
            server.close()
        # 4. WebSockets get their in-flight replies, then close with 1001: uvicorn's own shutdown would
        #    cut them with 1012, so they are done before it runs.
        await gateway.wait_websockets_closed(max(0.0, deadline - time.monotonic()))
        # 5. uvicorn lets in-flight HTTP requests and SSE streams finish within what is left of the grace,
        #    closes idle keep-alive connections, then runs the lifespan's shutdown (closing the channels).
        self._server.config.timeout_graceful_shutdown = max(0.0, deadline - time.monotonic())  # type: ignore[assignment]
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def stop_now(self) -> None:
        """Stop without the drain delay or grace (tests' teardown, a failed start, cancellation)."""
        if self._task is None or self._task.done():
            return
        self.gateway.stop_new_work()
        self._server.config.timeout_graceful_shutdown = 0
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    def component(self) -> Component:
        """This server as the last component of a process's lifecycle: started, drained, stopped."""
        return Component(
            "http server", start=self.start, drain=self.drain, close=self.stop_now, bounded=False
        )


async def serve(settings: GatewaySettings) -> None:
    """Run one gateway process until SIGTERM or SIGINT, then drain and return (the process exits 0).

    With `workers` above 1, `python -m atp_gateway` runs the supervisor (supervisor.py) instead, whose
    worker processes each run `serve_worker`.
    """
    life = await open_lifecycle(settings)
    async with life.starting():
        server = GatewayServer(settings)
        await life.add(server.component())
    # Tests and `make run` wait for this line, never on sleeps.
    ready = {
        "address": f"http://{settings.host}:{server.port}",
        "port": server.port,
        "metrics_port": life.metrics_port,
    }
    await run_until_signal(life, ready)


async def serve_worker(settings: GatewaySettings, on_ready: Callable[[int], None]) -> None:
    """One worker under the supervisor: listen on the shared port, drain on the supervisor's SIGTERM.

    SIGINT is ignored (a terminal's Ctrl-C reaches the whole process group; the supervisor turns it into
    one SIGTERM per worker), and so is any signal after the first, so the drain always runs to the end.
    The worker also drains when its supervisor dies (SIGKILL included), rather than serving on as an
    orphan: the kernel sends it SIGTERM then (Linux's parent-death signal).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _term_on_parent_death()
    life = await open_lifecycle(settings)
    async with life.starting():
        server = GatewayServer(settings, reuse_port=True)
        await life.add(server.component())
    await run_until_signal(
        life,
        {"port": server.port, "pid": os.getpid()},
        event="worker ready",
        signals=(signal.SIGTERM,),
        keep_handlers=True,
        on_ready=partial(on_ready, server.port),
    )


def _term_on_parent_death() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
