"""A tenant's limits, and an API key's on top of them, compiled once into the counters one admission checks."""

from __future__ import annotations

import calendar
import hashlib
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


def _budget_checks(
    daily: float | None, monthly: float | None, name_prefix: str = "", key_suffix: str = ""
) -> list[Check]:
    checks: list[Check] = []
    if daily is not None:
        checks.append(
            Check(
                "budget",
                f"{name_prefix}daily budget",
                round(daily * MICRO),
                _DAY_MS,
                f"{key_suffix}bd",
                "day",
            )
        )
    if monthly is not None:
        checks.append(
            Check(
                "budget",
                f"{name_prefix}monthly budget",
                round(monthly * MICRO),
                31 * _DAY_MS,
                f"{key_suffix}bm",
                "month",
            )
        )
    return checks


def compile_limits(tenant: str, config: TenantConfig) -> TenantLimits:
    """The counters of `config`, built once per configuration or directory version."""
    checks = _rate_checks({f: getattr(config, f) for f in KEY_LIMIT_FIELDS})
    checks += _budget_checks(config.daily_budget_usd, config.monthly_budget_usd)
    return TenantLimits(
        tenant, tuple(checks), _pick_header(checks, "requests"), _pick_header(checks, "tokens")
    )


def with_key_limits(tenant_limits: TenantLimits, key_id: str, limits: Mapping[str, float]) -> TenantLimits:
    """`tenant_limits` plus the counters of one API key's own `limits` (KEY_POLICY_FIELDS names).

    The key's counters live under the tenant's hash tag (`{tenant}:k:<key_id>:rm`), so one script call
    checks both scopes atomically, on a Redis Cluster too; a key's id, never the key, names them.
    """
    rates = {f: int(v) for f in KEY_LIMIT_FIELDS if (v := limits.get(f)) is not None}
    key_checks = _rate_checks(rates, f" of API key {key_id}", f"k:{key_id}:")
    key_checks += _budget_checks(
        limits.get("daily_budget_usd"),
        limits.get("monthly_budget_usd"),
        f"API key {key_id}'s ",
        f"k:{key_id}:",
    )
    return _extended(tenant_limits, key_checks)


def with_user_budgets(
    limits: TenantLimits, user: str, daily: float | None, monthly: float | None
) -> TenantLimits:
    """`limits` plus one end user's budgets. The user is named by a digest of its id in the counters'
    keys (ids are free text, bounded only by the request's size) and by the id itself in messages."""
    digest = hashlib.sha256(user.encode()).hexdigest()[:24]
    shown = user if len(user) <= 64 else user[:61] + "..."
    return _extended(limits, _budget_checks(daily, monthly, f"end user {shown!r}'s ", f"u:{digest}:"))


def _extended(limits: TenantLimits, more: list[Check]) -> TenantLimits:
    if not more:
        return limits
    checks = [*limits.checks, *more]
    start = len(limits.checks)
    return TenantLimits(
        limits.tenant,
        tuple(checks),
        limits.header_requests + _pick_header(checks, "requests", start),
        limits.header_tokens + _pick_header(checks, "tokens", start),
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
