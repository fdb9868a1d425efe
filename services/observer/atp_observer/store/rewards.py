"""The reward model: quality (from feedback, else a proxy) minus the route's cost and latency penalties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig

_Status = observer_pb2.ObservationStatus
# Read once: an enum attribute costs a wrapper lookup per access, and proxy_quality runs per observation.
_OK = _Status.OBSERVATION_STATUS_OK
_CANCELLED = _Status.OBSERVATION_STATUS_CANCELLED

# Quality of a successful reply by finish reason, before any feedback. The names are OpenAI's (adapters
# normalise to them) plus the few provider spellings that may slip through. A reply cut by the token limit
# is usually still partly useful (0.5); a filtered reply is not (0.0). Any other reason on a successful
# reply counts as a complete answer: success is the signal we have.
_FINISH_QUALITY: dict[str, float] = {
    "": 1.0,
    "stop": 1.0,
    "tool_calls": 1.0,
    "function_call": 1.0,
    "end_turn": 1.0,
    "stop_sequence": 1.0,
    "tool_use": 1.0,
    "length": 0.5,
    "max_tokens": 0.5,
    "content_filter": 0.0,
    "safety": 0.0,
    "refusal": 0.0,
}


@dataclass(frozen=True, slots=True)
class RewardWeights:
    """A route's penalties: per USD of cost and per second of latency."""

    cost_weight: float = 0.0
    latency_weight: float = 0.0


_NO_PENALTY = RewardWeights()


class RewardModel:
    """reward = quality - cost_weight * cost_usd - latency_weight * latency_seconds, weights per route.

    Quality is the feedback score (0..1) when feedback exists, else a proxy from the outcome:
    OK -> by finish reason (stop/tool_calls 1.0, length 0.5, content_filter 0.0, other 1.0);
    ERROR, PARTIAL (stream broke mid-way) and UNSPECIFIED (a producer bug earns no credit) -> 0.0;
    CANCELLED -> no reward at all (the caller gave up, which says nothing about the model).
    The model's configured quality prior is deliberately not used: it is the router's prior, and mixing it
    into observed rewards would count it twice.
    A route that is not configured (a concrete model, or a route since removed) has no penalties.
    """

    __slots__ = ("_weights",)

    def __init__(self, weights: Mapping[str, RewardWeights] | None = None) -> None:
        self._weights: dict[str, RewardWeights] = dict(weights or {})

    @classmethod
    def from_config(cls, config: AtpConfig) -> RewardModel:
        """The weights of every route in the configuration."""
        return cls(
            {
                name: RewardWeights(route.cost_weight, route.latency_weight)
                for name, route in config.routes.items()
            }
        )

    def weights(self, route: str) -> RewardWeights:
        """The route's weights (no penalties for an unknown route)."""
        return self._weights.get(route, _NO_PENALTY)

    def reward(self, route: str, quality: float, cost_usd: float, latency_ms: float) -> float:
        """The reward of one outcome on `route`."""
        per_usd, per_ms = self.penalties(route)
        return quality - per_usd * cost_usd - per_ms * latency_ms

    def penalties(self, route: str) -> tuple[float, float]:
        """The route's penalty per USD of cost and per millisecond of latency: reward is quality minus
        both (what `reward` computes, for callers that score many outcomes of a few routes)."""
        weights = self._weights.get(route, _NO_PENALTY)
        return weights.cost_weight, weights.latency_weight / 1000.0

    @staticmethod
    def proxy_quality(status: int, finish_reason: str) -> float | None:
        """Quality before feedback, or None when the outcome earns no reward (cancelled)."""
        if status == _OK:
            return _FINISH_QUALITY.get(finish_reason.lower(), 1.0)
        if status == _CANCELLED:
            return None
        return 0.0
