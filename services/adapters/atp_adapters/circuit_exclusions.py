"""This replica's circuit breakers as routing exclusions: a model whose circuit is open is not ranked."""

from __future__ import annotations

import time
from collections.abc import Callable

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

    The same transitions are reported to the router (`on_change`, which only wakes the reporter), so
    every other replica excludes the model too. What they are told lasts longer than the local exclusion:
    until this replica's probe has had its chance (the probe time plus one probe lease, or the lease of a
    probe in flight), so they wait for its outcome instead of all probing at once; if this replica goes
    quiet, the report lapses on its own.
    """

    def __init__(
        self,
        holder: PolicyHolder,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        on_change: Callable[[], None] = lambda: None,
    ):
        self._holder = holder
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._open: dict[str, router_pb2.Exclusion] = {}
        self._reported: dict[str, router_pb2.Exclusion] = {}

    def circuit(self, model: str, breaker: CircuitBreaker) -> ModelCircuit:
        """The circuit of one model, reporting its transitions here."""
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["closed"])
        return ModelCircuit(model, breaker, self)

    @property
    def open_models(self) -> frozenset[str]:
        """Models excluded by an open circuit in this replica."""
        return frozenset(self._open)

    def exclusions(self) -> list[router_pb2.Exclusion]:
        """The local exclusions (each until its circuit's probe time)."""
        return list(self._open.values())

    def report(self) -> list[router_pb2.Exclusion]:
        """What the router is told: every circuit not closed here, until its probe has had its chance."""
        return list(self._reported.values())

    def _wall(self, monotonic: float) -> float:
        return self._wall_clock() + max(monotonic - self._clock(), 0.0)

    def _opened(self, model: str, breaker: CircuitBreaker) -> None:
        exclusion = router_pb2.Exclusion(model=model, reason=f"{LOCAL_CIRCUIT_REASON}: {breaker.reason}")
        exclusion.until.FromNanoseconds(int(self._wall(breaker.open_until) * 1e9))
        self._open[model] = exclusion
        self._holder.set_local_exclusions(self._open)
        self._set_reported(model, breaker.reason, self._wall(breaker.open_until + breaker.open_s))
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["open"])

    def _probing(self, model: str, breaker: CircuitBreaker) -> None:
        # The probe may take up to its lease: the others keep away until its outcome is known.
        self._set_reported(model, breaker.reason, self._wall(breaker.probe_until))
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["half_open"])

    def _closed(self, model: str) -> None:
        if self._open.pop(model, None) is not None:
            self._holder.set_local_exclusions(self._open)
        if self._reported.pop(model, None) is not None:
            self._on_change()
        metrics.CIRCUIT_STATE.labels(model).set(metrics.CIRCUIT_VALUES["closed"])

    def _set_reported(self, model: str, reason: str, until: float) -> None:
        exclusion = router_pb2.Exclusion(model=model, reason=reason)
        exclusion.until.FromNanoseconds(int(until * 1e9))
        self._reported[model] = exclusion
        self._on_change()


class ModelCircuit:
    """One model's breaker as the pipeline uses it."""

    __slots__ = ("_exclusions", "breaker", "model")

    def __init__(self, model: str, breaker: CircuitBreaker, exclusions: CircuitExclusions) -> None:
        self.model = model
        self.breaker = breaker
        self._exclusions = exclusions

    @property
    def open(self) -> bool:
        """Whether the circuit is open now (a probe's time not yet come)."""
        return self.breaker.state == "open"

    def allow(self) -> bool:
        """Whether a call may go now (in half-open: whether this call is the probe)."""
        allowed = self.breaker.allow()
        if allowed and self.model in self._exclusions._open:
            self._exclusions._probing(self.model, self.breaker)
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
