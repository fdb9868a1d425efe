"""Prometheus metrics of the adapters; every label is bounded by the configuration (tenants, routes, models)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from atp_common.metrics import LATENCY_BUCKETS, QUEUE_DEPTH

# Tenants that the configuration does not name share this label, so callers cannot grow the series.
OTHER_TENANT = "other"

REQUESTS = Counter(
    "atp_adapters_requests_total",
    "Generate calls by route, serving model and outcome.",
    ["route", "model", "status"],
)
LATENCY = Histogram(
    "atp_adapters_request_latency_seconds",
    "Generate latency, start to last byte.",
    ["route", "model"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    "atp_adapters_time_to_first_token_seconds",
    "Start of the call to the first delta.",
    ["route", "model"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "atp_adapters_overhead_seconds",
    "Time the adapters added: total latency minus time spent waiting on providers.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "atp_adapters_tokens_total",
    "Tokens by tenant, route, model and kind.",
    ["tenant", "route", "model", "kind"],
)
COST = Counter(
    "atp_adapters_cost_usd_total", "Cost in USD by tenant, route and model.", ["tenant", "route", "model"]
)
DECISIONS = Counter(
    "atp_adapters_decisions_total", "Local routing decisions by first-ranked model.", ["route", "model"]
)
ATTEMPTS = Counter(
    "atp_adapters_provider_attempts_total", "Provider attempts by model and outcome.", ["model", "outcome"]
)
CIRCUIT_STATE = Gauge(
    "atp_adapters_circuit_state",
    "Circuit per model in this replica: 0 closed, 1 half-open, 2 open.",
    ["model"],
)
CIRCUIT_REPORTS = Counter(
    "atp_adapters_circuit_reports_total", "Circuit reports sent to the router, by outcome.", ["outcome"]
)
DEPLOYMENT_QUOTA_REFUSALS = Counter(
    "atp_adapters_deployment_quota_refusals_total",
    "Requests a deployment's rpm/tpm quota turned away (another deployment or model was tried).",
    ["model", "deployment"],
)
POLICY_VERSION = Gauge("atp_adapters_policy_version", "Version of the policy snapshot in use.")
POLICY_RECONNECTS = Counter("atp_adapters_policy_watch_reconnects_total", "WatchPolicy streams that ended.")
OBSERVATIONS = Counter(
    "atp_adapters_observations_total",
    "Observations by what happened to them: shipped, spooled, replayed, dropped, recovered (from a "
    "killed predecessor's log), unlogged (the log was full: shipped from memory only).",
    ["outcome"],
)
OBSERVATION_LOG_BYTES = Gauge(
    "atp_adapters_observation_log_bytes",
    "Bytes of observations in the local log not yet acknowledged or spooled (bounded by its cap).",
)
SPOOL_BYTES = Gauge("atp_adapters_spool_bytes", "Bytes of observation batches waiting in the spool.")
OBSERVATION_QUEUE = QUEUE_DEPTH.labels("observations")

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(slots=True)
class RequestSeries:
    """The bound children for one (tenant, route, model): label lookups cost more than the increments."""

    ok: Counter
    error: Counter
    partial: Counter
    cancelled: Counter
    latency: Histogram
    ttft: Histogram
    overhead: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    cached_tokens: Counter
    reasoning_tokens: Counter
    cost: Counter


_series: dict[tuple[str, str, str], RequestSeries] = {}


def request_series(tenant: str, route: str, model: str) -> RequestSeries:
    """The (cached) series for one tenant label, route and model; all three come from the configuration."""
    key = (tenant, route, model)
    series = _series.get(key)
    if series is None:
        series = RequestSeries(
            ok=REQUESTS.labels(route, model, "ok"),
            error=REQUESTS.labels(route, model, "error"),
            partial=REQUESTS.labels(route, model, "partial"),
            cancelled=REQUESTS.labels(route, model, "cancelled"),
            latency=LATENCY.labels(route, model),
            ttft=TTFT.labels(route, model),
            overhead=OVERHEAD.labels(route),
            prompt_tokens=TOKENS.labels(tenant, route, model, "prompt"),
            completion_tokens=TOKENS.labels(tenant, route, model, "completion"),
            cached_tokens=TOKENS.labels(tenant, route, model, "cached_prompt"),
            reasoning_tokens=TOKENS.labels(tenant, route, model, "reasoning"),
            cost=COST.labels(tenant, route, model),
        )
        _series[key] = series
    return series


_attempts: dict[tuple[str, str], Counter] = {}


def attempt(model: str, outcome: str) -> Counter:
    """The (cached) provider-attempt counter for one model and outcome (an ok or a ProviderError kind)."""
    counter = _attempts.get((model, outcome))
    if counter is None:
        counter = _attempts[(model, outcome)] = ATTEMPTS.labels(model, outcome)
    return counter
