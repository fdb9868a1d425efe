"""Prometheus metrics of the limiter; labels are bounded (store name, operation, refusal kind)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STORE_UP = Gauge("atp_limits_store_up", "1 while the limits store answers, 0 while it does not.", ["store"])
STORE_ERRORS = Counter(
    "atp_limits_store_errors_total", "Limits store calls that failed, by operation.", ["operation"]
)
FAIL_OPEN = Counter(
    "atp_limits_fail_open_total", "Requests admitted unchecked because the store was down (fail open)."
)
FAIL_CLOSED = Counter(
    "atp_limits_fail_closed_total", "Requests refused because the store was down (fail closed)."
)
REFUSALS = Counter("atp_limits_refusals_total", "Requests refused by a limit, by kind.", ["kind"])
SETTLEMENTS_DROPPED = Counter(
    "atp_limits_settlements_dropped_total",
    "Settlements dropped (queue full or store down); the reservation then stands as the spend.",
)
LEASES = Counter(
    "atp_limits_leases_total",
    "Leases asked of the store, by outcome: granted, or declined (near a limit, or refused).",
    ["outcome"],
)
LEASES_GRANTED = LEASES.labels("granted")
LEASES_DECLINED = LEASES.labels("declined")
