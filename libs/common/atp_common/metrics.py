"""Prometheus metrics shared by the services, and the listener that exposes them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics on its own port (off the request path); returns the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
