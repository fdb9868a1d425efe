"""Prometheus metrics shared by the services, and the listener that exposes them."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from atp_common.errors import StartupError

# Latency buckets from 1 ms to 2 min: gateway overhead sits at the low end, model calls at the high end.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

GRPC_REQUESTS = Counter(
    "atp_grpc_requests_total", "gRPC calls handled, by method and status code.", ["method", "code"]
)
GRPC_SECONDS = Histogram(
    "atp_grpc_request_seconds",
    "Time a gRPC call was handled, by method (streams: open to end).",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("atp_queue_depth", "Items waiting in a bounded internal queue.", ["queue"])


@dataclass(frozen=True, slots=True)
class MetricsListener:
    """The /metrics listener: its bound port, and how to stop its thread."""

    port: int
    server: WSGIServer
    thread: threading.Thread

    async def close(self) -> None:
        """Stop serving (shutdown waits for the serving loop to notice, off the event loop)."""
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()


def start_metrics_server(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> MetricsListener:
    """Serve /metrics from `registry` on its own port (off the request path)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise StartupError.unbound(f"{host}:{port} for metrics", exc.strerror or str(exc)) from exc
    return MetricsListener(int(server.server_port), server, thread)
