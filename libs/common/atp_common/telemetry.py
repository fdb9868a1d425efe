"""OpenTelemetry setup: one tracer provider per process, gRPC interceptors, OTLP export when configured."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def setup_tracing(
    service: str, otlp_endpoint: str = "", extra_processor: SpanProcessor | None = None
) -> None:
    """Install the process's tracer provider (once); export by OTLP when an endpoint is configured."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": f"atp-{service}"}))
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True))
            )
    if extra_processor is not None:
        _provider.add_span_processor(extra_processor)


async def shutdown_tracing() -> None:
    """Flush and stop exporters (part of the drain's close step)."""
    if _provider is not None:
        _provider.shutdown()


def server_interceptor() -> Any:
    """The OpenTelemetry grpc.aio server interceptor (W3C trace context in, server span per call)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor()


def client_interceptors() -> list[Any]:
    """The OpenTelemetry grpc.aio client interceptors (W3C trace context out)."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())
