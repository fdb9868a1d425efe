"""Retry backoff and per-model circuit breakers for provider calls, with injectable clocks for tests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from atp_adapters.providers.base import ProviderError
from atp_common import config

Clock = Callable[[], float]
CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to call the same provider again after a failure, and after how long.

    Exponential backoff with full jitter (a uniform delay in [0, min(max, base * 2**attempt)]), which
    spreads the retries of many clients. A Retry-After from the provider replaces the backoff; one longer
    than `max_delay_s` or than the time left means: do not wait here, fail over to the next candidate.
    """

    max_retries: int = 2
    base_delay_s: float = 0.2
    max_delay_s: float = 8.0
    random: Callable[[], float] = random.random

    @classmethod
    def from_config(cls, cfg: config.HttpProvider) -> RetryPolicy:
        return cls(cfg.max_retries, cfg.retry_base_delay_s, cfg.retry_max_delay_s)

    def delay_for(self, attempt: int, error: ProviderError, remaining_s: float | None = None) -> float | None:
        """Seconds to wait before retry number `attempt` (0 for the first retry), or None for no retry.

        Only retryable errors before the first token are retried (after it, a retry would repeat output).
        `remaining_s` is the time left before the request's deadline.
        """
        if not error.retryable or not error.before_first_token or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            delay = error.retry_after
            if delay > self.max_delay_s:
                return None
        else:
            delay = self.random() * min(self.max_delay_s, self.base_delay_s * (2.0**attempt))
        if remaining_s is not None and delay >= remaining_s:
            return None
        return delay


@dataclass(frozen=True, slots=True)
class OpenCircuit:
    """A model that routing should skip for now, as reported to the router."""

    provider: str
    model: str
    reason: str
    # Wall-clock time (Unix seconds) when the circuit lets a probe through.
    until: float


class CircuitBreaker:
    """Closed → open after `failures` consecutive failures → half-open after `open_s`, letting one probe
    through → closed on its success, open again on its failure.

    A probe whose outcome is never recorded (its caller was cancelled) would wedge the breaker
    half-open, so a probe's lease expires after `open_s` and another probe may go.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_open_s",
        "_opened_until",
        "_probe_until",
        "_state",
        "failures",
        "reason",
    )

    def __init__(self, failures: int, open_s: float, clock: Clock = time.monotonic) -> None:
        self._failures = failures
        self._open_s = open_s
        self._clock = clock
        self._state: CircuitState = "closed"
        self._opened_until = 0.0
        self._probe_until = 0.0
        self.failures = 0
        self.reason = ""

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose time is up reads as half-open)."""
        if self._state == "open" and self._clock() >= self._opened_until:
            return "half_open"
        return self._state

    @property
    def open_until(self) -> float:
        """Monotonic time when an open circuit lets a probe through."""
        return self._opened_until

    @property
    def probe_until(self) -> float:
        """Monotonic time when the lease of the probe handed out last expires."""
        return self._probe_until

    @property
    def open_s(self) -> float:
        """How long the circuit stays open before a probe, and how long a probe's lease lasts."""
        return self._open_s

    def allow(self) -> bool:
        """Whether a call may go now. In half-open, True hands out the single probe."""
        if self._state == "closed":
            return True
        now = self._clock()
        if self._state == "open":
            if now < self._opened_until:
                return False
            self._state = "half_open"
        elif now < self._probe_until:
            return False
        self._probe_until = now + self._open_s
        return True

    def record_success(self) -> None:
        self._state = "closed"
        self.failures = 0
        self.reason = ""

    def record_failure(self, reason: str) -> None:
        self.failures += 1
        self.reason = reason
        if self._state == "half_open" or self.failures >= self._failures:
            self._state = "open"
            self._opened_until = self._clock() + self._open_s


class Circuits:
    """The circuit breakers of one adapters replica, one per (provider, model)."""

    def __init__(self, clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def breaker(self, provider: str, model: str, failures: int = 5, open_s: float = 30.0) -> CircuitBreaker:
        """The breaker for this provider and model, created closed on first use."""
        key = (provider, model)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(failures, open_s, self._clock)
        return breaker

    def snapshot(self) -> list[OpenCircuit]:
        """The circuits that are not closed, for the router to exclude their models."""
        now, wall = self._clock(), self._wall_clock()
        return [
            OpenCircuit(provider, model, breaker.reason, wall + max(breaker.open_until - now, 0.0))
            for (provider, model), breaker in self._breakers.items()
            if breaker.state != "closed"
        ]
