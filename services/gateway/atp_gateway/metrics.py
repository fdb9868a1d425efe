"""Prometheus metrics of the gateway; labels are bounded (endpoint names and HTTP statuses)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from atp_common.metrics import LATENCY_BUCKETS

REQUESTS = Counter(
    "atp_gateway_requests_total", "Requests answered, by endpoint and HTTP status.", ["endpoint", "status"]
)
REQUEST_SECONDS = Histogram(
    "atp_gateway_request_seconds",
    "Time from request to the end of the reply (streams included), by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
# multiprocess_mode: how the supervisor merges the gauges of several workers (ATP_GATEWAY_WORKERS > 1,
# supervisor.py); ignored in a single process.
IN_FLIGHT = Gauge(
    "atp_gateway_in_flight",
    "Chat requests being served, by transport.",
    ["transport"],
    multiprocess_mode="livesum",
)
WEBSOCKETS = Gauge("atp_gateway_websockets", "Open WebSocket connections.", multiprocess_mode="livesum")
STREAM_ERRORS = Counter(
    "atp_gateway_stream_errors_total", "Streams that ended with an error event after output.", ["code"]
)
EDGE_REFUSED = Counter(
    "atp_gateway_edge_refused_total",
    "Connections and requests the HTTP edge refused before the app saw them, by reason.",
    ["reason"],
)
CACHE_COPY = Counter(
    "atp_gateway_cache_copy_total",
    "Lookups of the worker's copy of exact-match cache replies, by outcome (hit, miss, fall_through: the "
    "adapters must answer, e.g. a principal with limits; unreportable: a hit left to the adapters while "
    "the report queue is full).",
    ["outcome"],
)
CACHE_REPORTS = Counter(
    "atp_gateway_cache_hit_reports_total",
    "Cache hits answered here and reported to the adapters, by outcome (sent, retried, dropped).",
    ["outcome"],
)
CACHE_REPORT_QUEUE = Gauge(
    "atp_gateway_cache_hit_report_queue", "Cache hits waiting to be reported.", multiprocess_mode="livesum"
)
DISCONNECTS = Counter(
    "atp_gateway_client_disconnects_total", "Requests whose client went away before the reply ended."
)
OVERHEAD = Histogram(
    "atp_gateway_overhead_seconds",
    "Time ATP added to a completed chat request as seen at the edge: the gateway's total time minus the "
    "time the adapters waited on the provider (provider_ms), by reply mode (json or sse).",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD_JSON = OVERHEAD.labels("json")
OVERHEAD_SSE = OVERHEAD.labels("sse")


def overhead_seconds(started: float, provider_ms: float) -> float:
    """ATP's overhead, the one definition behind the metric and the x-atp-overhead-ms header: the time since
    `started` (perf_counter at the request's arrival) minus the provider time the adapters reported."""
    return max(time.perf_counter() - started - provider_ms / 1000.0, 0.0)


def overhead_header(seconds: float) -> tuple[bytes, bytes]:
    """The x-atp-overhead-ms response header for an overhead in seconds (microsecond resolution)."""
    return (b"x-atp-overhead-ms", b"%.3f" % (seconds * 1000.0))


# Children resolved once: labels() takes a lock and hashes the tuple on every call.
_request_children: dict[tuple[str, int], Counter] = {}
_seconds_children: dict[str, Histogram] = {}
IN_FLIGHT_HTTP = IN_FLIGHT.labels("http")
IN_FLIGHT_WS = IN_FLIGHT.labels("websocket")


def observe(endpoint: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    counter = _request_children.get((endpoint, status))
    if counter is None:
        counter = _request_children[(endpoint, status)] = REQUESTS.labels(endpoint, str(status))
    counter.inc()
    histogram = _seconds_children.get(endpoint)
    if histogram is None:
        histogram = _seconds_children[endpoint] = REQUEST_SECONDS.labels(endpoint)
    histogram.observe(seconds)


DIRECTORY_STORE_UP = Gauge(
    "atp_gateway_directory_store_up",
    "1 while the tenant directory store (Redis or the local file) answers; keys keep working from the last "
    "state while it does not.",
    # Several workers: 0 when any live worker cannot reach the store.
    multiprocess_mode="livemin",
)
