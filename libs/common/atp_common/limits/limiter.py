"""Admission against a tenant's limits (and its API key's) in one store round trip, and settlement with the
real usage after."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from atp_common.errors import BudgetExceeded, RateLimited, Unavailable
from atp_common.limits import metrics
from atp_common.limits.backends import Backend, MemoryBackend, RedisBackend, Settlement, StoreUnavailable
from atp_common.limits.rules import MICRO, TenantLimits, period_key_and_ttl

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

    @property
    def settles(self) -> bool:
        return bool(self.token_slots or self.budget_slots)


UNCHECKED = Ticket((), (), (), 0, 0, ())


def reset_text(ms: int) -> str:
    """A reset delay in OpenAI's style: `20ms`, `1s`, `6m0s`, `2h5m0s`."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class Limiter:
    """Checks and reserves a request's counters atomically; settles reservations in the background.

    `admit` costs one store round trip when the tenant has limits and none otherwise. Token counters
    reserve the estimate; budgets reserve the estimated cost in micro-USD; `settle` queues the difference
    between actual and reserved, applied by one task in pipelined batches off the request path. When the
    store fails, `fail_mode` decides: "open" admits unchecked (counted in atp_limits_fail_open_total),
    "closed" refuses with 503. `healthy` and atp_limits_store_up show the store's state, probed every
    `probe_interval_s` even without traffic.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        prefix: str = "atp:",
        fail_mode: FailMode = "closed",
        settle_queue_size: int = 10_000,
        settle_batch: int = 256,
        probe_interval_s: float = 1.0,
    ):
        self.backend = backend
        self.fail_mode = fail_mode
        self._prefix = prefix
        self._settle_queue: asyncio.Queue[Settlement] = asyncio.Queue(settle_queue_size)
        self._settle_batch = settle_batch
        self._probe_interval_s = probe_interval_s
        self._tasks: list[asyncio.Task[None]] = []
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
        """Start the settlement and probe tasks (idempotent)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._settle_loop(), name="limits-settle"),
                asyncio.create_task(self._probe_loop(), name="limits-probe"),
            ]

    async def close(self, timeout_s: float = 2.0) -> None:
        """Apply queued settlements (bounded by `timeout_s`), stop the tasks and close the store."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending: list[Settlement] = []
        while not self._settle_queue.empty():
            pending.append(self._settle_queue.get_nowait())
        if pending:
            try:
                await asyncio.wait_for(self.backend.settle(pending), timeout_s)
            except (StoreUnavailable, TimeoutError):
                metrics.SETTLEMENTS_DROPPED.inc(len(pending))
                log.error("could not apply %d settlements at close", len(pending))
        await self.backend.close()

    async def admit(self, limits: TenantLimits, *, tokens: int = 0, cost_usd: float = 0.0) -> Ticket:
        """Reserve one request, `tokens` and `cost_usd` against every counter of `limits`, or refuse.

        `limits` may hold a tenant's counters and its API key's: all are checked and reserved together, in
        one store call, or none is.

        Raises RateLimited (429) or BudgetExceeded (OpenAI's 429 insufficient_quota), each with
        retry_after; Unavailable when the store is down and the mode is "closed".
        """
        checks = limits.checks
        if not checks:
            return UNCHECKED
        now = time.time()
        tag = f"{self._prefix}{{{limits.tenant}}}:"
        micro = max(0, math.ceil(cost_usd * MICRO))
        keys: list[str] = []
        amounts: list[int] = []
        windows: list[int] = []
        elastic: list[bool] = []
        period_left: dict[int, int] = {}
        token_slots: list[int] = []
        budget_slots: list[int] = []
        for i, check in enumerate(checks):
            if check.kind == "requests":
                keys.append(tag + check.suffix)
                amounts.append(1)
                windows.append(check.window_ms)
                elastic.append(False)
            elif check.kind == "tokens":
                keys.append(tag + check.suffix)
                amounts.append(tokens)
                windows.append(check.window_ms)
                elastic.append(True)
                token_slots.append(i)
            else:
                period, ttl_ms, left_ms = period_key_and_ttl(check, now)
                keys.append(f"{tag}{check.suffix}:{period}")
                amounts.append(micro)
                windows.append(ttl_ms)
                elastic.append(False)
                period_left[i] = left_ms
                budget_slots.append(i)
        try:
            outcome = await self.backend.admit(keys, [c.limit for c in checks], amounts, windows, elastic)
        except StoreUnavailable as exc:
            metrics.STORE_ERRORS.labels("admit").inc()
            self._mark(False, str(exc))
            if self.fail_mode == "open":
                metrics.FAIL_OPEN.inc()
                return UNCHECKED
            metrics.FAIL_CLOSED.inc()
            raise Unavailable("The rate limit store is unavailable; retry shortly.", retry_after=1.0) from exc
        if not self._healthy:
            self._mark(True)
        ttl = list(outcome.ttl_ms)
        for i, left in period_left.items():
            ttl[i] = left  # a budget resets when its calendar period ends, not when its key expires
        if not outcome.admitted:
            check = checks[outcome.refused_by]
            retry_s = max(ttl[outcome.refused_by], 1) / 1000
            headers = self._headers(limits, outcome.used, ttl, outcome.refused_by)
            metrics.REFUSALS.labels(check.kind).inc()
            if check.kind == "budget":
                spent = outcome.used[outcome.refused_by] / MICRO
                if micro > check.limit:
                    raise BudgetExceeded(
                        f"This request's reservation (about ${micro / MICRO:.4f}: the prompt and max_tokens, "
                        f"or the default output estimate, at the dearest candidate's price) is larger than "
                        f"your whole {check.name} (${check.limit / MICRO:.2f}), so it can never be admitted. "
                        "Set a lower max_tokens, or cap the route's max_reservation_tokens.",
                        param="max_tokens",
                        headers=headers,
                    )
                raise BudgetExceeded(
                    f"You exceeded your {check.name} (${check.limit / MICRO:.2f}, ${spent:.4f} spent or "
                    f"reserved); this request needs about ${micro / MICRO:.4f}. It resets in "
                    f"{reset_text(ttl[outcome.refused_by])}.",
                    retry_after=retry_s,
                    headers=headers,
                )
            raise RateLimited(
                f"Rate limit reached for {check.name}: limit {check.limit}, used "
                f"{outcome.used[outcome.refused_by]}, requested {amounts[outcome.refused_by]}. "
                f"Please try again in {reset_text(ttl[outcome.refused_by])}.",
                retry_after=retry_s,
                headers=headers,
            )
        return Ticket(
            tuple(keys),
            tuple(token_slots),
            tuple(budget_slots),
            tokens,
            micro,
            self._headers(limits, outcome.used, ttl),
        )

    def _headers(
        self, limits: TenantLimits, used: tuple[int, ...], ttl: list[int], refused_by: int = -1
    ) -> Headers:
        # Each kind reports its tightest applicable limit: the refusing check when it is of that kind, else
        # the candidate (the tenant's, the key's) with the least remaining.
        headers: list[tuple[str, str]] = []
        checks = limits.checks
        for candidates, unit in ((limits.header_requests, "requests"), (limits.header_tokens, "tokens")):
            if not candidates:
                continue
            if refused_by >= 0 and checks[refused_by].kind == unit:
                index = refused_by
            else:
                index = min(candidates, key=lambda i: (checks[i].limit - used[i], checks[i].limit))
            limit = checks[index].limit
            headers += (
                (f"x-ratelimit-limit-{unit}", str(limit)),
                (f"x-ratelimit-remaining-{unit}", str(max(limit - used[index], 0))),
                (f"x-ratelimit-reset-{unit}", reset_text(ttl[index])),
            )
        return tuple(headers)

    def settle(self, ticket: Ticket, *, tokens: int, cost_usd: float) -> None:
        """Queue the correction from reserved to actual usage; never blocks the caller."""
        if not ticket.settles:
            return
        token_delta = tokens - ticket.reserved_tokens
        micro_delta = math.ceil(max(cost_usd, 0.0) * MICRO) - ticket.reserved_micro
        keys: list[str] = []
        deltas: list[int] = []
        for i in ticket.token_slots:
            if token_delta:
                keys.append(ticket.keys[i])
                deltas.append(token_delta)
        for i in ticket.budget_slots:
            if micro_delta:
                keys.append(ticket.keys[i])
                deltas.append(micro_delta)
        if not keys:
            return
        try:
            self._settle_queue.put_nowait(Settlement(tuple(keys), tuple(deltas)))
        except asyncio.QueueFull:
            metrics.SETTLEMENTS_DROPPED.inc()
            log.error("settlement queue full; a reservation stands as the spend")

    async def flush(self) -> None:
        """Wait until every queued settlement has been applied (tests, drain)."""
        await self._settle_queue.join()

    async def _settle_loop(self) -> None:
        queue = self._settle_queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._settle_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self.backend.settle(batch)
                if not self._healthy:
                    self._mark(True)
            except StoreUnavailable as exc:
                metrics.STORE_ERRORS.labels("settle").inc()
                metrics.SETTLEMENTS_DROPPED.inc(len(batch))
                self._mark(False, str(exc))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self.backend.ping()
            except StoreUnavailable as exc:
                metrics.STORE_ERRORS.labels("ping").inc()
                self._mark(False, str(exc))
            else:
                if not self._healthy:
                    self._mark(True)


def open_limiter(
    redis_url: str,
    *,
    prefix: str = "atp:",
    fail_mode: FailMode = "closed",
    timeout_s: float = 0.25,
) -> Limiter:
    """A limiter on Redis when `redis_url` is set, else in process."""
    backend: Backend = RedisBackend(redis_url, timeout_s=timeout_s) if redis_url else MemoryBackend()
    return Limiter(backend, prefix=prefix, fail_mode=fail_mode)
