"""A service's whole life from one list of components: started in order, drained, closed in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from atp_common.errors import StartupError
from atp_common.heap import freeze_startup_heap
from atp_common.settings import ServiceSettings

log = logging.getLogger("atp.lifecycle")

__all__ = ["Component", "Lifecycle", "ServiceLife", "open_lifecycle", "run_until_signal"]

Step = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a service: what starts it, what it does when the drain begins, and what closes it.

    `bounded` components share the lifecycle's close budget; a listener is not, because its own grace
    period bounds it (and the budget is for what comes after it: clients, queues, exporters).
    """

    name: str
    start: Step | None = None
    drain: Step | None = None
    close: Step | None = None
    bounded: bool = True


async def _run(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


class Lifecycle:
    """The components of one service on an AsyncExitStack. Each one's close is registered before its start
    runs, so whatever was registered is closed on every way out: a later start failing, the drain, or the
    task being cancelled. Drain hooks run newest first (the listener, registered last, stops taking work
    before anything else), then closes run newest first under one bounded budget."""

    def __init__(self, close_timeout_s: float) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._components: list[Component] = []
        self._close_timeout_s = close_timeout_s
        self._deadline: float | None = None
        self._draining = False
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def draining(self) -> bool:
        """True once the drain sequence has started."""
        return self._draining

    @property
    def closed(self) -> bool:
        """True once every component has been closed (or given up on)."""
        return self._closed.is_set()

    @property
    def names(self) -> tuple[str, ...]:
        """The registered components' names, in start order."""
        return tuple(c.name for c in self._components)

    async def add(self, component: Component) -> None:
        """Register `component` (its close first), then start it."""
        if self._closing:
            raise RuntimeError(f"cannot add {component.name!r}: the lifecycle is closing")
        self._components.append(component)
        if component.close is not None:
            self._stack.push_async_callback(self._close_one, component)
        if component.start is not None:
            await _run(component.start)

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[Lifecycle]:
        """Wrap the start-up: when anything inside raises (or is cancelled), what started is closed."""
        try:
            yield self
        except BaseException:
            await self.close()
            raise

    async def drain(self) -> None:
        """Every drain hook, newest first, then every close. Safe to call twice; the second call waits."""
        if self._draining or self._closing:
            await self._closed.wait()
            return
        self._draining = True
        for component in reversed(self._components):
            if component.drain is None:
                continue
            try:
                await _run(component.drain)
            except Exception:
                log.exception("drain hook of %s failed", component.name)
        await self.close()

    async def close(self) -> None:
        """Close every component, newest first, without draining (a failed start, cancellation, tests)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self._stack.aclose()
        finally:
            self._closed.set()
            log.info("stopped")

    async def _close_one(self, component: Component) -> None:
        assert component.close is not None
        if not component.bounded:
            try:
                await _run(component.close)
            except Exception:
                log.exception("closing %s failed", component.name)
            return
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            # The budget starts with the first bounded close, after the listeners have stopped.
            self._deadline = loop.time() + self._close_timeout_s
        remaining = self._deadline - loop.time()
        if remaining <= 0:
            log.error("no time left to close %s; giving up on it", component.name)
            return
        try:
            await asyncio.wait_for(_run(component.close), remaining)
        except TimeoutError:
            log.error("closing took longer than %.1fs; giving up on the rest", self._close_timeout_s)
        except Exception:
            log.exception("closing %s failed", component.name)


class ServiceLife(Lifecycle):
    """A service's lifecycle, opened with what every service has beside its listener: the trace flush and
    the metrics port. They come first, so they close last and see the whole drain."""

    metrics_port: int | None = None


@contextlib.contextmanager
def exit_when_unable_to_start(service: str) -> Iterator[None]:
    """Around an entry point's whole run: a StartupError becomes one `cannot start` line and exit 1."""
    try:
        yield
    except StartupError as exc:
        log.error("cannot start", extra={"service": service, "reason": str(exc)})
        raise SystemExit(1) from None


async def open_lifecycle(settings: ServiceSettings) -> ServiceLife:
    """A lifecycle for a service: the trace flush (when tracing is on), then the metrics listener."""
    life = ServiceLife(settings.close_timeout_s)
    async with life.starting():
        if settings.tracing or settings.otlp_endpoint:
            from atp_common.telemetry import shutdown_tracing

            await life.add(Component("tracing", close=shutdown_tracing))
        if settings.metrics_port is not None:
            from atp_common.metrics import start_metrics_server

            metrics = start_metrics_server(settings.host, settings.metrics_port)
            await life.add(Component("metrics listener", close=metrics.close))
            life.metrics_port = metrics.port
    return life


async def run_until_signal(
    life: Lifecycle,
    ready: Mapping[str, object],
    *,
    event: str = "ready",
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    keep_handlers: bool = False,
    supervise: Callable[[asyncio.Event], Awaitable[None]] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until one of `signals`, then drain; on any other way out (an error, cancellation) close.

    `ready` are the fields of the one "ready" line tests and `make run` wait for. The handlers are removed
    once the drain starts (a second Ctrl-C stops the process at once) unless `keep_handlers`, which ignores
    any signal after the first so the drain always runs to its end. `supervise`, when given, runs until the
    stop event is set (the gateway supervisor restarts dead workers there). `on_ready` runs right after
    the "ready" line, once the handlers are in place.
    """
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    installed = True
    try:
        log.info(event, extra=dict(ready))
        if on_ready is not None:
            on_ready()
        if supervise is not None:
            await supervise(stop)
        else:
            await stop.wait()
        if not keep_handlers:
            for sig in signals:
                loop.remove_signal_handler(sig)
            installed = False
        await life.drain()
    finally:
        if installed:
            for sig in signals:
                loop.remove_signal_handler(sig)
        # A no-op after the drain; after an error or cancellation it closes what started.
        await life.close()
