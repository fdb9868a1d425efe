"""This replica's circuit breakers as routing exclusions: a model whose circuit is open is not ranked."""

from __future__ import annotations

import time

from atp.router.v1 import router_pb2
from atp_adapters import metrics
from atp_adapters.policy_watch import LOCAL_CIRCUIT_REASON, PolicyHolder
from atp_adapters.providers import ProviderError
from atp_adapters.resilience import CircuitBreaker, Clock

_MAX_REASON_CHARS = 200


class CircuitExclusions:
    """The models whose circuit is open here, kept in the PolicyHolder as exclusions.

    Each exclusion lasts until the circuit lets a probe through (`Exclusion.until`, which the kernel
    honours), so after that time the kernel ranks the model again, the breaker hands one request the
    probe, and its outcome closes the circuit (the exclusion goes) or reopens it (a new `until`). Changes
    happen only on those transitions, so the policy is recompiled rarely and deciding stays cheap.
    """

    def __init__(self, holder: PolicyHolder, clock: Clock = time.monotonic, wall_clock: Clock = time.time):
        self._holder = holder
        self._clock = clock
        self._wall_clock = wall_clock
        self._open: dict[str, router_pb2.Exclusion] = {}

    def circuit(self, model: str, breaker: CircuitBreaker) -> ModelCircuit:
        """The circuit of one model, reporting its transitions here."""
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["closed"])
        return ModelCircuit(model, breaker, self)

    @property
    def open_models(self) -> frozenset[str]:
        """Models excluded by an open circuit in this replica."""
        return frozenset(self._open)

    def exclusions(self) -> list[router_pb2.Exclusion]:
        """The current exclusions (what the router would need to learn from this replica)."""
        return list(self._open.values())

    def _opened(self, model: str, breaker: CircuitBreaker) -> None:
        exclusion = router_pb2.Exclusion(model=model, reason=f"{LOCAL_CIRCUIT_REASON}: {breaker.reason}")
        until = self._wall_clock() + max(breaker.open_until - self._clock(), 0.0)
        exclusion.until.FromNanoseconds(int(until * 1e9))
        self._open[model] = exclusion
        self._holder.set_local_exclusions(self._open)
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["open"])

    def _closed(self, model: str) -> None:
        if self._open.pop(model, None) is not None:
            self._holder.set_local_exclusions(self._open)
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["closed"])


class ModelCircuit:
    """One model's breaker as the pipeline uses it."""

    __slots__ = ("_exclusions", "breaker", "model")

    def __init__(self, model: str, breaker: CircuitBreaker, exclusions: CircuitExclusions) -> None:
        self.model = model
        self.breaker = breaker
        self._exclusions = exclusions

    def allow(self) -> bool:
        """Whether a call may go now (in half-open: whether this call is the probe)."""
        allowed = self.breaker.allow()
        if allowed and self.model in self._exclusions._open:
            metrics.CIRCUIT_STATE.labels(self.model).set(metrics.CIRCUIT_VALUES["half_open"])
        return allowed

    def record_success(self) -> None:
        """A call succeeded: the circuit closes."""
        self.breaker.record_success()
        if self.model in self._exclusions._open:
            self._exclusions._closed(self.model)

    def record_failure(self, error: ProviderError) -> None:
        """A call failed; failures that say nothing about the provider's health (a bad request) don't count."""
        if not error.counts_for_circuit:
            return
        self.breaker.record_failure(error.message[:_MAX_REASON_CHARS])
        if self.breaker.state == "open":
            self._exclusions._opened(self.model, self.breaker)
