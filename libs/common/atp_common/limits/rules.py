"""A tenant's limits, and an API key's on top of them, compiled once into the counters one admission checks."""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from atp_common.config import KEY_LIMIT_FIELDS, TenantConfig

Kind = Literal["requests", "tokens", "budget"]

MICRO = 1_000_000  # budgets are counted in micro-USD: integers, so Redis can INCRBY them exactly
_SECOND_MS = 1000
_MINUTE_MS = 60 * _SECOND_MS
_DAY_MS = 24 * 60 * _MINUTE_MS
# A budget counter outlives its calendar period by a day, so a late settlement still finds it.
_BUDGET_GRACE_MS = _DAY_MS


@dataclass(frozen=True, slots=True)
class Check:
    """One counter: its kind, the limit, its window and the key suffix that names it.

    Request and token windows start at the first hit and last `window_ms` (the count is exact within
    a window, and a replica-independent reset time comes from the counter's TTL). Budgets follow the
    UTC calendar: `period` is "day" or "month" and the key carries the period, so it rolls over by name.
    """

    kind: Kind
    name: str  # e.g. "requests per minute", for messages
    limit: int
    window_ms: int
    suffix: str
    period: Literal["", "day", "month"] = ""


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What one request of a tenant may spend: the tenant's checks, then those of the API key that made it
    when the key has limits of its own (every check must pass). `checks` is empty when nothing is limited
    (admission is then skipped)."""

    tenant: str
    checks: tuple[Check, ...]
    # Indexes of the checks whose numbers may go into x-ratelimit-*-requests / -tokens: one per scope (the
    # tenant's, the key's), each the per-minute check when configured, as OpenAI reports, else the tightest
    # window. The limiter reports the one with the least remaining, the tightest at that moment.
    header_requests: tuple[int, ...]
    header_tokens: tuple[int, ...]
    # Derived once from `checks` (read on every admission).
    limits_tokens: bool = field(init=False)
    limits_budget: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits_tokens", any(c.kind == "tokens" for c in self.checks))
        object.__setattr__(self, "limits_budget", any(c.kind == "budget" for c in self.checks))


def _pick_header(checks: list[Check], kind: Kind, start: int = 0) -> tuple[int, ...]:
    indexes = [i for i, c in enumerate(checks) if c.kind == kind and i >= start]
    for i in indexes:
        if checks[i].window_ms == _MINUTE_MS:
            return (i,)
    return (indexes[0],) if indexes else ()


_RATE_WINDOWS = (("second", _SECOND_MS), ("minute", _MINUTE_MS), ("day", _DAY_MS))


def _rate_checks(
    values: Mapping[str, int | None], name_suffix: str = "", key_suffix: str = ""
) -> list[Check]:
    checks: list[Check] = []
    for kind in ("requests", "tokens"):
        for unit, window_ms in _RATE_WINDOWS:
            value = values.get(f"{kind}_per_{unit}")
            if value is not None:
                checks.append(
                    Check(
                        kind,
                        f"{kind} per {unit}{name_suffix}",
                        value,
                        window_ms,
                        f"{key_suffix}{kind[0]}{unit[0]}",
                    )
                )
    return checks


def compile_limits(tenant: str, config: TenantConfig) -> TenantLimits:
    """The counters of `config`, built once per configuration or directory version."""
    checks = _rate_checks({f: getattr(config, f) for f in KEY_LIMIT_FIELDS})
    if config.daily_budget_usd is not None:
        checks.append(
            Check("budget", "daily budget", round(config.daily_budget_usd * MICRO), _DAY_MS, "bd", "day")
        )
    if config.monthly_budget_usd is not None:
        checks.append(
            Check(
                "budget",
                "monthly budget",
                round(config.monthly_budget_usd * MICRO),
                31 * _DAY_MS,
                "bm",
                "month",
            )
        )
    return TenantLimits(
        tenant, tuple(checks), _pick_header(checks, "requests"), _pick_header(checks, "tokens")
    )


def with_key_limits(tenant_limits: TenantLimits, key_id: str, limits: Mapping[str, int]) -> TenantLimits:
    """`tenant_limits` plus the counters of one API key's own `limits` (KEY_LIMIT_FIELDS names).

    The key's counters live under the tenant's hash tag (`{tenant}:k:<key_id>:rm`), so one script call
    checks both scopes atomically, on a Redis Cluster too; a key's id, never the key, names them.
    """
    key_checks = _rate_checks(limits, f" of API key {key_id}", f"k:{key_id}:")
    if not key_checks:
        return tenant_limits
    checks = [*tenant_limits.checks, *key_checks]
    start = len(tenant_limits.checks)
    return TenantLimits(
        tenant_limits.tenant,
        tuple(checks),
        tenant_limits.header_requests + _pick_header(checks, "requests", start),
        tenant_limits.header_tokens + _pick_header(checks, "tokens", start),
    )


def period_key_and_ttl(check: Check, now: float) -> tuple[str, int, int]:
    """For a budget check: the period id, the counter's TTL in ms and the ms left until the period ends."""
    tm = time.gmtime(now)
    if check.period == "day":
        start = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0))
        end = start + 86400
        period = f"{tm.tm_year:04d}{tm.tm_mon:02d}{tm.tm_mday:02d}"
    else:
        start = calendar.timegm((tm.tm_year, tm.tm_mon, 1, 0, 0, 0))
        year, month = (tm.tm_year + 1, 1) if tm.tm_mon == 12 else (tm.tm_year, tm.tm_mon + 1)
        end = calendar.timegm((year, month, 1, 0, 0, 0))
        period = f"{tm.tm_year:04d}{tm.tm_mon:02d}"
    left_ms = max(1, int((end - now) * 1000))
    return period, left_ms + _BUDGET_GRACE_MS, left_ms
