"""A model's deployments and the per-request choice among them: weighted, least busy, fastest, or by quota."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from atp_adapters import metrics
from atp_adapters.limits.backends import Backend, StoreUnavailable
from atp_adapters.providers import Provider, ProviderError
from atp_adapters.resilience import CircuitBreaker, RetryPolicy
from atp_common.regions import RegionFilter

Strategy = Literal["weighted", "least_busy", "latency", "quota_aware"]
# How fast the time-to-first-token average follows new measurements.
_EWMA_ALPHA = 0.3
# Share of requests the latency strategy sends in random order, so a deployment that was slow is
# measured again and can win traffic back once it recovers.
_LATENCY_EXPLORE = 0.05
# A 429 without Retry-After keeps a deployment aside this long.
_DEFAULT_COOLDOWN_S = 1.0
_MINUTE_MS = 60_000


class Breaker(Protocol):
    """A deployment's circuit: the model's own (ModelCircuit, reported to the router) when the model has
    one deployment, a LocalBreaker otherwise."""

    @property
    def open(self) -> bool: ...

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self, error: ProviderError) -> None: ...


class LocalBreaker:
    """A CircuitBreaker of one deployment among several, kept in this replica."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    @property
    def open(self) -> bool:
        return self.breaker.state == "open"

    def allow(self) -> bool:
        return self.breaker.allow()

    def record_success(self) -> None:
        self.breaker.record_success()

    def record_failure(self, error: ProviderError) -> None:
        if error.counts_for_circuit:
            self.breaker.record_failure(error.message[:200])


@dataclass(slots=True, eq=False)
class Deployment:
    """One place a model runs: a provider endpoint, region and quota, with its own health."""

    name: str
    provider_name: str
    provider: Provider
    provider_model: str
    region: str
    weight: float
    retry: RetryPolicy
    breaker: Breaker
    features: int = -1
    # The model takes only adaptive thinking (its configuration's `thinking: adaptive`).
    adaptive_thinking: bool = False
    # The model's most output tokens (0: not configured).
    max_output_tokens: int = 0
    rpm: int | None = None
    tpm: int | None = None
    in_flight: int = 0
    ttft_ms: float | None = None
    cooldown_until: float = 0.0
    # Requests this replica sent in the current minute, and which minute that is.
    served: int = 0
    minute: int = 0

    def count(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.served = minute, 0
        self.served += 1

    def served_this_minute(self, now: float) -> int:
        return self.served if int(now // 60) == self.minute else 0

    def healthy(self, now: float) -> bool:
        return now >= self.cooldown_until and not self.breaker.open

    def observe_first_token(self, ms: float) -> None:
        self.ttft_ms = ms if self.ttft_ms is None else self.ttft_ms + _EWMA_ALPHA * (ms - self.ttft_ms)

    def failed(self, error: ProviderError, now: float) -> None:
        """A failed attempt: the breaker counts it, and a 429 sets the deployment aside for its
        Retry-After."""
        self.breaker.record_failure(error)
        if error.status == 429:
            self.cooldown_until = now + (error.retry_after or _DEFAULT_COOLDOWN_S)


@dataclass(slots=True)
class DeploymentSet:
    """A model's deployments and its strategy. `candidates` ranks the usable ones for one request;
    `reserve` takes one request (and its token estimate) from a deployment's quota, exactly across
    replicas when the quota backend is Redis."""

    model: str
    strategy: Strategy
    deployments: list[Deployment]
    quota: Backend | None = None
    prefix: str = "atp:deployment:"
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def usable(self, required_features: int, regions: RegionFilter | None) -> list[Deployment]:
        """The deployments that may serve a request needing `required_features` within `regions`."""
        return [
            d
            for d in self.deployments
            if (d.features & required_features) == required_features
            and (not regions or regions.allows(d.region))
        ]

    def candidates(self, required_features: int = 0, regions: RegionFilter | None = None) -> list[Deployment]:
        """Usable, healthy deployments in the order the strategy prefers (unhealthy ones last, so a model
        whose every deployment is resting can still be probed)."""
        now = self.clock()
        usable = self.usable(required_features, regions)
        healthy = [d for d in usable if d.healthy(now)]
        resting = [d for d in usable if not d.healthy(now)]
        return self._rank(healthy) + resting

    def _rank(self, deployments: list[Deployment]) -> list[Deployment]:
        if len(deployments) < 2:
            return deployments
        rng = self.rng
        if self.strategy == "least_busy":
            return sorted(deployments, key=lambda d: (d.in_flight, rng.random()))
        if self.strategy == "latency" and rng.random() >= _LATENCY_EXPLORE:
            # Unmeasured deployments first: they are measured before the averages decide.
            return sorted(deployments, key=lambda d: (d.ttft_ms is not None, d.ttft_ms or 0.0, rng.random()))
        if self.strategy == "quota_aware":
            return sorted(deployments, key=lambda d: (-self._headroom(d), rng.random()))
        # Weighted random order (each key u^(1/w)): the first place goes to each in proportion to its weight.
        return sorted(deployments, key=lambda d: -(rng.random() ** (1.0 / max(d.weight, 1e-9))))

    def _headroom(self, deployment: Deployment) -> float:
        # This replica's view; the reservation in Redis is what makes the quota exact.
        if deployment.rpm is None:
            return 1.0
        return 1.0 - deployment.served_this_minute(self.clock()) / deployment.rpm

    async def reserve(self, deployment: Deployment, tokens: int) -> bool:
        """Take one request and `tokens` from the deployment's per-minute quota; False when it is spent.
        Deployments without a quota (or models not on quota_aware) always admit, without a call."""
        if self.strategy != "quota_aware" or (deployment.rpm is None and deployment.tpm is None):
            return True
        keys, limits, amounts = [], [], []
        base = f"{self.prefix}{self.model}:{deployment.name}"
        if deployment.rpm is not None:
            keys.append(base + ":rpm")
            limits.append(deployment.rpm)
            amounts.append(1)
        if deployment.tpm is not None:
            keys.append(base + ":tpm")
            limits.append(deployment.tpm)
            amounts.append(tokens)
        if self.quota is None:
            return True
        try:
            result = await self.quota.admit(
                keys, limits, amounts, [_MINUTE_MS] * len(keys), [False] * len(keys)
            )
        except StoreUnavailable:
            # Without the shared counters nothing can be promised: keep to this replica's own count.
            now = self.clock()
            if deployment.rpm is not None and deployment.served_this_minute(now) >= deployment.rpm:
                return False
            deployment.count(now)
            return True
        if result.admitted:
            deployment.count(self.clock())
        else:
            metrics.DEPLOYMENT_QUOTA_REFUSALS.labels(self.model, deployment.name).inc()
        return result.admitted
