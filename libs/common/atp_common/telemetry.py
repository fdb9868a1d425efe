"""OpenTelemetry setup: one tracer provider per process, gRPC and FastAPI instrumentation, OTLP export."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = [
    "client_interceptors",
    "current_trace_id",
    "inject_trace_headers",
    "instrument_app",
    "server_interceptor",
    "setup_tracing",
    "shutdown_tracing",
    "tracer",
]

_provider: TracerProvider | None = None
_processors: list[SpanProcessor] = []

# Calls that are not part of any request: health polls (every second from every peer) and reflection would
# drown the traces, and the watch streams live for hours, so a span for them says nothing per request.
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
_UNTRACED_METHODS = ("WatchPolicy", "WatchRewards")
# Probes and scrapes at the edge are not requests either.
_UNTRACED_URLS = "/livez,/readyz,/startupz,/healthz,/metrics"


def setup_tracing(
    service: str, otlp_endpoint: str = "", extra_processor: SpanProcessor | None = None
) -> None:
    """Install the process's tracer provider (once); export by OTLP when an endpoint is configured.

    `service` is the short name (`gateway`, `router`, ...); the resource says `atp-<service>`.
    """
    global _provider
    if _provider is None:
        name = service if service.startswith("atp-") else f"atp-{service}"
        _provider = TracerProvider(resource=Resource.create({"service.name": name}))
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _add(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    if extra_processor is not None and extra_processor not in _processors:
        _add(extra_processor)


def _add(processor: SpanProcessor) -> None:
    assert _provider is not None
    _provider.add_span_processor(processor)
    _processors.append(processor)


async def shutdown_tracing(timeout_s: float = 2.0) -> None:
    """Export the spans still queued (part of the drain's close step).

    A flush, not a shutdown: servers built in one process (tests, the suite launcher) share the provider,
    and one server's drain must not stop the others' tracing. The SDK shuts the provider down at exit.
    """
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def tracer(name: str) -> trace.Tracer:
    """A tracer from the process's provider (a no-op one until setup_tracing ran)."""
    return trace.get_tracer(name)


def _traced(details: Any) -> bool:
    method = details.method
    if isinstance(method, bytes):  # grpc.aio client call details carry bytes (grpc/grpc#31092)
        method = method.decode()
    service, _, name = method.lstrip("/").rpartition("/")
    return not service.startswith(_UNTRACED_SERVICES) and name not in _UNTRACED_METHODS


def server_interceptor() -> Any:
    """The OpenTelemetry grpc.aio server interceptor (W3C trace context in, server span per call)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(filter_=_traced)


def client_interceptors() -> list[Any]:
    """The OpenTelemetry grpc.aio client interceptors (W3C trace context out, client span per call).

    The library's server-streaming interceptor is replaced: it hands back an async generator that ends
    the span only when the caller reads the stream to its end, and the gateway stops reading at the
    completion message; ours returns the call itself and ends the span when the call is done.
    """
    from grpc import aio
    from opentelemetry.instrumentation.grpc import aio_client_interceptors
    from opentelemetry.instrumentation.grpc._aio_client import _BaseAioClientInterceptor

    class UnaryStreamInterceptor(aio.UnaryStreamClientInterceptor, _BaseAioClientInterceptor):
        async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
            if self.tracing_skipped(client_call_details):
                return await continuation(client_call_details, request)
            with self._start_interceptor_span(client_call_details.method) as span:
                details = self.propagate_trace_in_details(client_call_details)
                try:
                    call = await continuation(details, request)
                except BaseException:
                    span.end()
                    raise
            call.add_done_callback(lambda _call: span.end())
            return call

    library = aio_client_interceptors(filter_=_traced)
    tracer = library[0]._tracer
    return [
        UnaryStreamInterceptor(tracer, filter_=_traced)
        if isinstance(interceptor, aio.UnaryStreamClientInterceptor)
        else interceptor
        for interceptor in library
    ]


def instrument_app(app: Any) -> None:
    """Server spans for the FastAPI edge, continuing a caller's W3C trace context.

    The per-message `receive`/`send` spans are left out: a streamed reply would get one span per write.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=_UNTRACED_URLS, exclude_spans=["receive", "send"])


def inject_trace_headers(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) for the current span to outgoing HTTP headers."""
    propagate.inject(headers)


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or "" outside a sampled trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
