"""A tenant's limits compiled once into the list of counters one admission checks."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Literal

from atp_common.config import TenantConfig

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
    """What one tenant may spend; `checks` is empty when nothing is limited (admission is then skipped)."""

    tenant: str
    checks: tuple[Check, ...]
    # Index of the check whose numbers go into x-ratelimit-*-requests / -tokens (the per-minute one when
    # configured, as OpenAI reports, else the tightest window).
    header_requests: int | None
    header_tokens: int | None

    @property
    def limits_tokens(self) -> bool:
        return any(c.kind == "tokens" for c in self.checks)

    @property
    def limits_budget(self) -> bool:
        return any(c.kind == "budget" for c in self.checks)


def _pick_header(checks: list[Check], kind: Kind) -> int | None:
    indexes = [i for i, c in enumerate(checks) if c.kind == kind]
    for i in indexes:
        if checks[i].window_ms == _MINUTE_MS:
            return i
    return indexes[0] if indexes else None


def compile_limits(tenant: str, config: TenantConfig) -> TenantLimits:
    """The counters of `config`, built once per configuration or directory version."""
    checks: list[Check] = []
    for kind, unit, window_ms, value in (
        ("requests", "second", _SECOND_MS, config.requests_per_second),
        ("requests", "minute", _MINUTE_MS, config.requests_per_minute),
        ("requests", "day", _DAY_MS, config.requests_per_day),
        ("tokens", "second", _SECOND_MS, config.tokens_per_second),
        ("tokens", "minute", _MINUTE_MS, config.tokens_per_minute),
        ("tokens", "day", _DAY_MS, config.tokens_per_day),
    ):
        if value is not None:
            checks.append(Check(kind, f"{kind} per {unit}", value, window_ms, f"{kind[0]}{unit[0]}"))  # type: ignore[arg-type]
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
