"""A replica's leases: slices of a window's remaining quota reserved in the store and spent locally."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from atp_common.limits.rules import TenantLimits, period_key_and_ttl

__all__ = ["Lease", "Plan", "build_plan"]

# Kinds as small ints: `amounts` picks a request's amount per counter by index on the hot path.
REQUESTS, TOKENS, BUDGET = 0, 1, 2
REQUEST_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


@dataclass(slots=True)
class Lease:
    """What this replica may still spend without asking the store, per counter (the store counts all of it
    as used), until `expires` (monotonic s). `used` are the counters' values when it was granted (its own
    grant included) and `window_ends` when each counter's window ends (monotonic s), for the headers and
    for deciding whether an unspent rest is worth returning."""

    left: list[int]
    used: tuple[int, ...]
    window_ends: tuple[float, ...]
    expires: float

    def low(self, amounts: list[int], requests: int) -> bool:
        """Whether fewer than `requests` more requests of `amounts` fit in what is left of some counter."""
        left = self.left
        for i, amount in enumerate(amounts):
            if left[i] < amount * requests:
                return True
        return False

    def take(self, amounts: list[int], now: float) -> bool:
        """Spend `amounts` from the lease when all of it fits and the lease is live; no await, so atomic."""
        if now >= self.expires:
            return False
        left = self.left
        for i, amount in enumerate(amounts):
            if left[i] < amount:
                return False
        for i, amount in enumerate(amounts):
            left[i] -= amount
        return True


@dataclass(slots=True)
class Plan:
    """One TenantLimits compiled into store keys (budget keys name the current calendar period), with the
    lease this replica holds on them. Rebuilt when a budget period rolls over (`rolls_at`, wall s)."""

    limits: TenantLimits
    keys: tuple[str, ...]
    tag: str  # the tenant's hash tag prefix: every key of one plan lives in one Redis Cluster slot
    kinds: tuple[int, ...]
    windows_ms: tuple[int, ...]
    elastic: tuple[bool, ...]
    limit_values: tuple[int, ...]
    token_slots: tuple[int, ...]
    budget_slots: tuple[int, ...]
    period_ends: dict[int, float]  # budget slot -> wall time its period ends
    rolls_at: float
    # The limits as header text, and per reported kind its candidates, kind and header names.
    limit_texts: tuple[str, ...] = ()
    header_kinds: tuple[tuple[tuple[int, ...], str, tuple[str, str, str]], ...] = ()
    lease: Lease | None = None
    # Set while one admission asks the store for a lease; the others wait for it instead of asking too.
    renewing: asyncio.Event | None = None
    # Until then (monotonic s) admissions ask for no lease: the store refused one (near a limit) or failed.
    no_lease_until: float = 0.0
    touched: float = field(default_factory=time.monotonic)

    def amounts(self, tokens: int, micro: int) -> list[int]:
        by_kind = (1, tokens, micro)
        return [by_kind[kind] for kind in self.kinds]

    def ttl_ms(self, ttl: list[int], now_wall: float) -> list[int]:
        """`ttl` with each budget's reset put at the end of its calendar period, not its key's expiry."""
        for i, end in self.period_ends.items():
            ttl[i] = max(1, int((end - now_wall) * 1000))
        return ttl


def build_plan(limits: TenantLimits, prefix: str, now_wall: float) -> Plan:
    """The keys and shape of `limits` at `now_wall`."""
    tag = f"{prefix}{{{limits.tenant}}}:"
    keys: list[str] = []
    kinds: list[int] = []
    windows: list[int] = []
    period_ends: dict[int, float] = {}
    for i, check in enumerate(limits.checks):
        if check.kind == "budget":
            period, ttl_ms, left_ms = period_key_and_ttl(check, now_wall)
            keys.append(f"{tag}{check.suffix}:{period}")
            kinds.append(BUDGET)
            windows.append(ttl_ms)
            period_ends[i] = now_wall + left_ms / 1000
        else:
            keys.append(tag + check.suffix)
            kinds.append(REQUESTS if check.kind == "requests" else TOKENS)
            windows.append(check.window_ms)
    return Plan(
        limits=limits,
        keys=tuple(keys),
        tag=tag,
        kinds=tuple(kinds),
        windows_ms=tuple(windows),
        elastic=tuple(k == TOKENS for k in kinds),
        limit_values=tuple(c.limit for c in limits.checks),
        token_slots=tuple(i for i, k in enumerate(kinds) if k == TOKENS),
        budget_slots=tuple(i for i, k in enumerate(kinds) if k == BUDGET),
        period_ends=period_ends,
        rolls_at=min(period_ends.values(), default=math.inf),
        limit_texts=tuple(str(c.limit) for c in limits.checks),
        header_kinds=tuple(
            (candidates, unit, names)
            for candidates, unit, names in (
                (limits.header_requests, "requests", REQUEST_HEADERS),
                (limits.header_tokens, "tokens", TOKEN_HEADERS),
            )
            if candidates
        ),
    )
