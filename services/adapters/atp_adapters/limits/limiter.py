"""Admission against a tenant's limits (and its API key's), from a lease or in one store round trip, and
settlement with the real usage after, in batches."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal, NoReturn

from atp_adapters.limits import metrics
from atp_adapters.limits.backends import (
    Admission,
    Backend,
    MemoryBackend,
    RedisBackend,
    Settlement,
    StoreUnavailable,
)
from atp_adapters.limits.leases import Lease, Plan, build_plan
from atp_common.errors import BudgetExceeded, RateLimited, Unavailable
from atp_common.limits.rules import MICRO, TenantLimits

log = logging.getLogger("atp.limits")

__all__ = ["FailMode", "Limiter", "Ticket", "open_limiter"]

FailMode = Literal["open", "closed"]
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request: the counters it reserved and the x-ratelimit-* values to report."""

    keys: tuple[str, ...]
    token_slots: tuple[int, ...]  # indexes into keys of token counters
    budget_slots: tuple[int, ...]  # indexes into keys of budget counters
    reserved_tokens: int
    reserved_micro: int
    headers: Headers
    tag: str = ""  # the tenant's key prefix: settlements are applied per tenant, in one Cluster slot

    @property
    def settles(self) -> bool:
        return bool(self.token_slots or self.budget_slots)


UNCHECKED = Ticket((), (), (), 0, 0, ())
# A lease's rest is returned only to a window with more than this left; the same margin ends a lease early.
RETURN_MARGIN_S = 0.25
_PLAN_IDLE_S = 60.0


def reset_text(ms: int) -> str:
    """A reset delay in OpenAI's style: `20ms`, `1s`, `6m0s`, `2h5m0s`."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    return _seconds_text(-(-ms // 1000))


@functools.lru_cache(maxsize=4096)
def _seconds_text(seconds: int) -> str:
    # Cached: every admission formats its resets, and a window's resets repeat the same few seconds.
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class Limiter:
    """Checks and reserves a request's counters atomically; settles reservations in the background.

    While a tenant is far from its limits, `admit` spends from a lease: a slice of every counter's remaining
    quota (`lease_requests` requests' worth) reserved in the store by one admission and spent here without a
    round trip, its unspent rest returned when it expires (`lease_ttl_s`), its window ends or the limits
    change. Near a limit the store grants no lease and every admission is one atomic store call, so counts
    stay exact there (design notes, "Leased admission"). Token counters reserve the estimate; budgets reserve
    the estimated cost in micro-USD; `settle` adds the difference between actual and reserved to a table
    one task applies every `settle_interval_s`, one pipelined round trip for all. When the store fails,
    `fail_mode` decides: "open" admits unchecked (counted in atp_limits_fail_open_total), "closed" refuses
    with 503. `healthy` and atp_limits_store_up show the store's state, probed every `probe_interval_s`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        prefix: str = "atp:",
        fail_mode: FailMode = "closed",
        lease_requests: int | None = None,
        lease_ttl_s: float = 1.0,
        settle_interval_s: float = 0.05,
        call_timeout_s: float = 2.0,
        max_pending_tenants: int = 10_000,
        probe_interval_s: float = 1.0,
    ):
        self.backend = backend
        self.fail_mode = fail_mode
        self._prefix = prefix
        self._lease_requests = (32 if lease_requests is None else lease_requests) if backend.leases else 0
        self._lease_ttl_s = lease_ttl_s
        self._plans: dict[int, Plan] = {}
        # Settlements and returned leases not yet applied: tenant tag -> key -> delta.
        self._pending: dict[str, dict[str, int]] = {}
        self._max_pending = max_pending_tenants
        self._wake = asyncio.Event()
        self._settle_lock = asyncio.Lock()
        self._settle_interval_s = settle_interval_s
        self._call_timeout_s = call_timeout_s
        self._probe_interval_s = probe_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        # Renewals in flight (an admission's, or one started early): awaited on close, so none installs a
        # lease after the rests have been returned.
        self._renewals: set[asyncio.Future[Admission]] = set()
        self._up = metrics.STORE_UP.labels(backend.name)
        self._healthy = True
        self._up.set(1)
        self.last_error = ""

    @property
    def healthy(self) -> bool:
        """Whether the store answered the last call or probe."""
        return self._healthy

    def _mark(self, healthy: bool, error: str = "") -> None:
        if healthy != self._healthy:
            if healthy:
                log.info("limits store reachable again", extra={"store": self.backend.name})
            else:
                log.error(
                    "limits store unreachable; failing %s",
                    self.fail_mode,
                    extra={"store": self.backend.name, "error": error},
                )
        self._healthy = healthy
        self._up.set(1 if healthy else 0)
        if error:
            self.last_error = error

    def start(self) -> None:
        """Start the settlement, probe and lease sweep tasks (idempotent)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._settle_loop(), name="limits-settle"),
                asyncio.create_task(self._probe_loop(), name="limits-probe"),
                asyncio.create_task(self._sweep_loop(), name="limits-sweep"),
            ]

    async def close(self, timeout_s: float = 2.0) -> None:
        """Return every lease's rest, apply pending settlements (bounded by `timeout_s`), stop the tasks and
        close the store."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a store client stuck in a dead connection must not hold the drain.
            _done, stuck = await asyncio.wait(tasks, timeout=timeout_s)
            if stuck:
                log.error("limits tasks did not stop in %.1f s", timeout_s)
        if self._renewals:
            await asyncio.wait(self._renewals, timeout=timeout_s)
        now = time.monotonic()
        for plan in self._plans.values():
            self._retire(plan, now)
        self._plans.clear()
        await self._apply_pending(timeout_s)
        await self.backend.close()

    async def admit(self, limits: TenantLimits, *, tokens: int = 0, cost_usd: float = 0.0) -> Ticket:
        """Reserve one request, `tokens` and `cost_usd` against every counter of `limits`, or refuse.

        `limits` may hold a tenant's counters and its API key's: all are checked and reserved together, from
        this replica's lease or in one store call, or none is.

        Raises RateLimited (429) or BudgetExceeded (OpenAI's 429 insufficient_quota), each with
        retry_after; Unavailable when the store is down and the mode is "closed".
        """
        if not limits.checks:
            return UNCHECKED
        micro = max(0, math.ceil(cost_usd * MICRO))
        plan = self._plan(limits)
        amounts = plan.amounts(tokens, micro)
        while True:
            lease = plan.lease
            if lease is not None:
                now = time.monotonic()
                if lease.take(amounts, now):
                    if plan.renewing is None and lease.low(amounts, self._lease_requests // 4):
                        self._renew_early(plan, amounts, now)
                    return self._leased_ticket(plan, lease, tokens, micro, now)
            if plan.renewing is None:
                return await self._admit_remote(plan, amounts, tokens, micro)
            await plan.renewing.wait()

    def _plan(self, limits: TenantLimits) -> Plan:
        plan = self._plans.get(id(limits))
        now_wall = time.time()
        # The plan holds `limits`, so its id cannot be reused while the plan exists.
        if plan is None or now_wall >= plan.rolls_at:
            if plan is not None:
                self._retire(plan, time.monotonic())
            plan = self._plans[id(limits)] = build_plan(limits, self._prefix, now_wall)
        return plan

    def _leased_ticket(self, plan: Plan, lease: Lease, tokens: int, micro: int, now: float) -> Ticket:
        # What this replica knows: the counters at the grant, less what is left of its own lease. The
        # headers name request and token counters only, so budgets' calendar resets are not computed here.
        used = tuple(u - left for u, left in zip(lease.used, lease.left, strict=True))
        ttl = [int((end - now) * 1000) for end in lease.window_ends]
        headers = self._headers(plan, used, ttl)
        return Ticket(plan.keys, plan.token_slots, plan.budget_slots, tokens, micro, headers, plan.tag)

    async def _admit_remote(self, plan: Plan, amounts: list[int], tokens: int, micro: int) -> Ticket:
        now = plan.touched = time.monotonic()
        self._retire(plan, now)
        wants = None
        if self._lease_requests and now >= plan.no_lease_until:
            wants = [amount * self._lease_requests for amount in amounts]
        try:
            if wants is None:
                outcome = await self.backend.admit(
                    plan.keys, plan.limit_values, amounts, plan.windows_ms, plan.elastic
                )
            else:
                # Shielded: a caller that goes away mid-call must not lose a lease Redis has counted.
                outcome = await asyncio.shield(self._start_renewal(plan, amounts, wants))
        except StoreUnavailable as exc:
            plan.no_lease_until = time.monotonic() + self._lease_ttl_s
            metrics.STORE_ERRORS.labels("admit").inc()
            self._mark(False, str(exc))
            if self.fail_mode == "open":
                metrics.FAIL_OPEN.inc()
                return UNCHECKED
            metrics.FAIL_CLOSED.inc()
            raise Unavailable("The rate limit store is unavailable; retry shortly.", retry_after=1.0) from exc
        if not self._healthy:
            self._mark(True)
        used = outcome.used
        if outcome.leased and wants is not None:
            used = tuple(u - w for u, w in zip(used, wants, strict=True))
        ttl = plan.ttl_ms(list(outcome.ttl_ms), time.time())
        if not outcome.admitted:
            self._refuse(plan, outcome.refused_by, used, ttl, amounts)
        return Ticket(
            plan.keys,
            plan.token_slots,
            plan.budget_slots,
            tokens,
            micro,
            self._headers(plan, used, ttl),
            plan.tag,
        )

    def _start_renewal(self, plan: Plan, amounts: list[int], wants: list[int]) -> asyncio.Future[Admission]:
        plan.renewing = asyncio.Event()
        renewal = asyncio.ensure_future(self._renew(plan, amounts, wants, plan.renewing))
        self._renewals.add(renewal)
        renewal.add_done_callback(self._renewals.discard)
        renewal.add_done_callback(_retrieve)
        return renewal

    def _renew_early(self, plan: Plan, amounts: list[int], now: float) -> None:
        """Ask for the next lease while this one still has a quarter left, so admissions go on spending
        instead of waiting for the store when it runs out; the rest of this one is returned when the next
        is installed. A failure here only means the next admission that finds the lease short asks itself."""
        if now < plan.no_lease_until:
            return
        wants = [amount * self._lease_requests for amount in amounts]
        self._start_renewal(plan, [0] * len(amounts), wants).add_done_callback(
            functools.partial(_after_early_renewal, plan, self._lease_ttl_s)
        )

    async def _renew(
        self, plan: Plan, amounts: list[int], wants: list[int], renewing: asyncio.Event
    ) -> Admission:
        """Admit one request and ask for a lease with it; wakes the admissions waiting for the lease."""
        try:
            outcome = await self.backend.admit(
                plan.keys, plan.limit_values, amounts, plan.windows_ms, plan.elastic, wants
            )
            self._install_lease(plan, wants, outcome)
            return outcome
        finally:
            plan.renewing = None
            renewing.set()

    def _install_lease(self, plan: Plan, wants: list[int], outcome: Admission) -> None:
        now = time.monotonic()
        if not outcome.leased:
            # Near a limit (or refused): one request at a time for a while, concurrently, no waiting on leases.
            plan.no_lease_until = now + self._lease_ttl_s
            metrics.LEASES_DECLINED.inc()
            return
        ends = tuple(now + ttl / 1000 for ttl in outcome.ttl_ms)
        expires = min(now + self._lease_ttl_s, min(ends) - RETURN_MARGIN_S)
        # An early renewal replaces a lease with a rest: the rest goes back as any replaced lease's does.
        self._retire(plan, now)
        plan.lease = Lease(list(wants), outcome.used, ends, expires)
        metrics.LEASES_GRANTED.inc()

    def _refuse(
        self, plan: Plan, index: int, used: tuple[int, ...], ttl: list[int], amounts: list[int]
    ) -> NoReturn:
        check = plan.limits.checks[index]
        retry_s = max(ttl[index], 1) / 1000
        headers = self._headers(plan, used, ttl, index)
        metrics.REFUSALS.labels(check.kind).inc()
        if check.kind == "budget":
            if amounts[index] > check.limit:
                # Never admissible, whatever was spent: say so rather than "retry after the reset".
                raise BudgetExceeded(
                    f"This request's reservation (about ${amounts[index] / MICRO:.4f}: the prompt and "
                    "max_tokens, or the default output estimate, at the dearest candidate's price) is larger "
                    f"than your whole {check.name} (${check.limit / MICRO:.2f}), so it can never be admitted. "
                    "Set a lower max_tokens, or cap the route's max_reservation_tokens.",
                    param="max_tokens",
                    headers=headers,
                )
            raise BudgetExceeded(
                f"You exceeded your {check.name} (${check.limit / MICRO:.2f}, ${used[index] / MICRO:.4f} spent or "
                f"reserved); this request needs about ${amounts[index] / MICRO:.4f}. It resets in "
                f"{reset_text(ttl[index])}.",
                retry_after=retry_s,
                headers=headers,
            )
        raise RateLimited(
            f"Rate limit reached for {check.name}: limit {check.limit}, used "
            f"{used[index]}, requested {amounts[index]}. "
            f"Please try again in {reset_text(ttl[index])}.",
            retry_after=retry_s,
            headers=headers,
        )

    def _retire(self, plan: Plan, now: float) -> None:
        """Drop the plan's lease and queue the return of its unspent rest to counters whose window still
        runs (a window about to end takes its rest with it: returning it could land in the next window)."""
        lease = plan.lease
        if lease is None:
            return
        plan.lease = None
        for i, left in enumerate(lease.left):
            if left > 0 and lease.window_ends[i] - now > RETURN_MARGIN_S:
                self._queue(plan.tag, plan.keys[i], -left)

    def _headers(self, plan: Plan, used: tuple[int, ...], ttl: list[int], refused_by: int = -1) -> Headers:
        # Each kind reports its tightest applicable limit: the refusing check when it is of that kind, else
        # the candidate (the tenant's, the key's) with the least remaining.
        headers: list[tuple[str, str]] = []
        checks = plan.limits.checks
        for candidates, unit, names in plan.header_kinds:
            if refused_by >= 0 and checks[refused_by].kind == unit:
                index = refused_by
            elif len(candidates) == 1:
                index = candidates[0]
            else:
                index = min(candidates, key=lambda i: (checks[i].limit - used[i], checks[i].limit))
            remaining = checks[index].limit - used[index]
            headers += (
                (names[0], plan.limit_texts[index]),
                (names[1], str(remaining) if remaining > 0 else "0"),
                (names[2], reset_text(ttl[index])),
            )
        return tuple(headers)

    def settle(self, ticket: Ticket, *, tokens: int, cost_usd: float) -> None:
        """Queue the correction from reserved to actual usage; never blocks the caller."""
        if not ticket.settles:
            return
        token_delta = tokens - ticket.reserved_tokens
        micro_delta = math.ceil(max(cost_usd, 0.0) * MICRO) - ticket.reserved_micro
        if token_delta:
            for i in ticket.token_slots:
                self._queue(ticket.tag, ticket.keys[i], token_delta)
        if micro_delta:
            for i in ticket.budget_slots:
                self._queue(ticket.tag, ticket.keys[i], micro_delta)

    def _queue(self, tag: str, key: str, delta: int) -> None:
        batch = self._pending.get(tag)
        if batch is None:
            if len(self._pending) >= self._max_pending:
                metrics.SETTLEMENTS_DROPPED.inc()
                log.error("settlement table full; a reservation stands as the spend")
                return
            batch = self._pending[tag] = {}
        batch[key] = batch.get(key, 0) + delta
        self._wake.set()

    async def flush(self) -> None:
        """Return every lease's rest and apply every pending settlement now (tests, drain): the store's
        counters then hold what was spent."""
        now = time.monotonic()
        for plan in self._plans.values():
            self._retire(plan, now)
        await self._apply_pending(self._call_timeout_s)

    async def _apply_pending(self, timeout_s: float) -> None:
        async with self._settle_lock:
            pending, self._pending = self._pending, {}
            batch = [
                Settlement(tuple(k for k, d in deltas.items() if d), tuple(d for d in deltas.values() if d))
                for deltas in pending.values()
            ]
            batch = [item for item in batch if item.keys]
            if not batch:
                return
            try:
                async with asyncio.timeout(timeout_s):
                    await self.backend.settle(batch)
            except (StoreUnavailable, TimeoutError) as exc:
                metrics.STORE_ERRORS.labels("settle").inc()
                metrics.SETTLEMENTS_DROPPED.inc(len(batch))
                self._mark(False, str(exc) or type(exc).__name__)
            else:
                if not self._healthy:
                    self._mark(True)

    async def _settle_loop(self) -> None:
        while True:
            await self._wake.wait()
            # Gather what arrives meanwhile: one round trip per interval, however many requests settled.
            await asyncio.sleep(self._settle_interval_s)
            self._wake.clear()
            await self._apply_pending(self._call_timeout_s)

    async def _sweep_loop(self) -> None:
        # A quarter of a lease's life: an expired lease's rest goes back soon after it expires.
        while True:
            await asyncio.sleep(self._lease_ttl_s / 4)
            self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        """Return expired leases, and forget plans idle for a minute (limits that changed, tenants gone)."""
        for key, plan in list(self._plans.items()):
            if plan.lease is not None and now >= plan.lease.expires:
                self._retire(plan, now)
            if plan.lease is None and plan.renewing is None and now - plan.touched > _PLAN_IDLE_S:
                del self._plans[key]

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                async with asyncio.timeout(self._call_timeout_s):
                    await self.backend.ping()
            except (StoreUnavailable, TimeoutError) as exc:
                metrics.STORE_ERRORS.labels("ping").inc()
                self._mark(False, str(exc) or type(exc).__name__)
            else:
                if not self._healthy:
                    self._mark(True)


def _after_early_renewal(plan: Plan, pause_s: float, task: asyncio.Future[Admission]) -> None:
    # The store failed or refused: no early renewal for a while (the admission that finds the lease short
    # goes to the store as before, and meets its failure there).
    if task.cancelled() or task.exception() is not None:
        plan.no_lease_until = time.monotonic() + pause_s


def _retrieve(task: asyncio.Future[Admission]) -> None:
    # The caller of a renewal may have gone; its failure is then nobody's to raise, so it is read here.
    if not task.cancelled():
        task.exception()


def open_limiter(
    redis_url: str,
    *,
    prefix: str = "atp:",
    fail_mode: FailMode = "closed",
    timeout_s: float = 0.25,
    lease_requests: int | None = None,
) -> Limiter:
    """A limiter on Redis when `redis_url` is set, else in process."""
    backend: Backend = RedisBackend(redis_url, timeout_s=timeout_s) if redis_url else MemoryBackend()
    return Limiter(backend, prefix=prefix, fail_mode=fail_mode, lease_requests=lease_requests)
