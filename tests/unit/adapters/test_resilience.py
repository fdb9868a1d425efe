"""RetryPolicy decisions and the circuit breaker's state machine, on fake clocks."""

from __future__ import annotations

import pytest

from atp_adapters.providers import ProviderError
from atp_adapters.providers.base import http_error
from atp_adapters.resilience import CircuitBreaker, Circuits, OpenCircuit, RetryPolicy
from atp_common.config import HttpProvider


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def failure(
    status: int = 503, retry_after: float | None = None, before_first_token: bool = True
) -> ProviderError:
    return http_error("p", status, "boom", retry_after, before_first_token=before_first_token)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    top = RetryPolicy(max_retries=10, base_delay_s=0.1, max_delay_s=1.0, random=lambda: 0.999999)
    assert [round(top.delay_for(n, failure()), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    bottom = RetryPolicy(max_retries=10, base_delay_s=0.1, max_delay_s=1.0, random=lambda: 0.0)
    assert bottom.delay_for(3, failure()) == 0.0
    half = RetryPolicy(max_retries=10, base_delay_s=0.1, max_delay_s=1.0, random=lambda: 0.5)
    assert half.delay_for(2, failure()) == pytest.approx(0.2)


def test_only_retryable_errors_before_the_first_token_within_the_budget() -> None:
    policy = RetryPolicy(max_retries=2, base_delay_s=0.1, max_delay_s=1.0, random=lambda: 0.5)
    assert policy.delay_for(0, failure(503)) is not None
    assert policy.delay_for(1, failure(503)) is not None
    assert policy.delay_for(2, failure(503)) is None  # retries used up
    assert policy.delay_for(0, failure(400)) is None  # not retryable
    assert policy.delay_for(0, failure(401)) is None
    assert policy.delay_for(0, failure(503, before_first_token=False)) is None  # output already sent
    timeout = ProviderError("slow", kind="timeout")
    assert policy.delay_for(0, timeout) is None


def test_retry_after_is_honoured_within_max_delay_and_deadline() -> None:
    policy = RetryPolicy(max_retries=2, base_delay_s=0.1, max_delay_s=5.0, random=lambda: 0.5)
    assert policy.delay_for(0, failure(429, retry_after=2.0)) == 2.0
    assert policy.delay_for(0, failure(429, retry_after=2.0), remaining_s=1.5) is None  # fail over instead
    assert policy.delay_for(0, failure(429, retry_after=30.0)) is None  # longer than we wait here
    assert policy.delay_for(0, failure(503), remaining_s=0.01) is None


def test_policy_from_config() -> None:
    cfg = HttpProvider(
        type="openai", base_url="http://x", max_retries=4, retry_base_delay_s=0.5, retry_max_delay_s=3
    )
    policy = RetryPolicy.from_config(cfg)
    assert (policy.max_retries, policy.base_delay_s, policy.max_delay_s) == (4, 0.5, 3)


def test_circuit_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, open_s=30.0, clock=clock)
    breaker.record_failure("HTTP 500")
    breaker.record_failure("HTTP 500")
    breaker.record_success()  # not consecutive any more
    breaker.record_failure("HTTP 500")
    breaker.record_failure("HTTP 500")
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure("HTTP 502")
    assert breaker.state == "open" and breaker.reason == "HTTP 502"
    assert not breaker.allow()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_failed_probe_reopens_and_a_lost_probe_expires() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, open_s=10.0, clock=clock)
    breaker.record_failure("timeout")
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure("timeout again")
    assert breaker.state == "open" and breaker.open_until == clock.now + 10
    clock.now += 10
    assert breaker.allow()  # probe handed out, its caller never reports back
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()  # the lease expired: another probe


def test_snapshot_lists_circuits_that_are_not_closed_with_wall_clock_until() -> None:
    clock, wall = FakeClock(50.0), FakeClock(1_700_000_000.0)
    circuits = Circuits(clock=clock, wall_clock=wall)
    a = circuits.breaker("openai", "gpt-a", failures=1, open_s=30)
    circuits.breaker("openai", "gpt-b", failures=1, open_s=30).record_success()
    assert circuits.breaker("openai", "gpt-a") is a
    assert circuits.snapshot() == []
    a.record_failure("HTTP 503: overloaded")
    clock.now += 10
    wall.now += 10
    assert circuits.snapshot() == [OpenCircuit("openai", "gpt-a", "HTTP 503: overloaded", 1_700_000_030.0)]
