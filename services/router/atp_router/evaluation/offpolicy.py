"""Off-policy evaluation over logged decisions: IPS, self-normalised IPS and doubly robust estimators."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from atp.observer.v1 import observer_pb2
from atp_common.policy._math import invert, mat_vec
from atp_common.policy.kernel import UNLEARNED_POLICIES

# A target policy: the probability it gives each action in a context.
TargetPolicy = Callable[[Sequence[float]], Mapping[str, float]]
# A reward model: predicted reward of an action in a context.
RewardModel = Callable[[Sequence[float], str], float]

# Logged propensities below this are clipped: one near-zero propensity would otherwise dominate the sum.
DEFAULT_MIN_PROPENSITY = 1e-3


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One logged decision: its context, the action taken, that action's logging propensity, its reward."""

    features: tuple[float, ...]
    action: str
    propensity: float
    reward: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy-value estimate with its standard error, sample size and effective sample size of weights."""

    value: float
    std_error: float
    n: int
    effective_sample_size: float


def records_from_events(events: Iterable[observer_pb2.RewardEvent]) -> list[LoggedRecord]:
    """Logged records from reward events: a correction replaces its decision's reward; direct calls skipped."""
    by_decision: dict[str, LoggedRecord] = {}
    for event in events:
        if event.propensity <= 0 or event.policy in UNLEARNED_POLICIES:
            continue
        previous = by_decision.get(event.decision_id)
        if event.correction and previous is not None:
            by_decision[event.decision_id] = LoggedRecord(
                previous.features, previous.action, previous.propensity, event.reward
            )
        elif previous is None:
            by_decision[event.decision_id] = LoggedRecord(
                tuple(event.features), event.model, event.propensity, event.reward
            )
    return list(by_decision.values())


def _weights(
    records: Sequence[LoggedRecord],
    target: TargetPolicy,
    min_propensity: float,
    max_weight: float | None,
) -> list[float]:
    weights = []
    for record in records:
        w = target(record.features).get(record.action, 0.0) / max(record.propensity, min_propensity)
        if max_weight is not None:
            w = min(w, max_weight)
        weights.append(w)
    return weights


def _summary(terms: Sequence[float], weights: Sequence[float]) -> Estimate:
    n = len(terms)
    if n == 0:
        raise ValueError("no logged records to evaluate")
    mean = math.fsum(terms) / n
    variance = math.fsum((t - mean) ** 2 for t in terms) / (n - 1) if n > 1 else 0.0
    total = math.fsum(weights)
    squares = math.fsum(w * w for w in weights)
    ess = total * total / squares if squares > 0 else 0.0
    return Estimate(mean, math.sqrt(variance / n), n, ess)


def ips(
    records: Sequence[LoggedRecord],
    target: TargetPolicy,
    *,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    max_weight: float | None = None,
) -> Estimate:
    """Inverse propensity scoring: mean of pi(a|x) / mu(a|x) * r. Unbiased, high variance."""
    weights = _weights(records, target, min_propensity, max_weight)
    return _summary([w * r.reward for w, r in zip(weights, records, strict=True)], weights)


def snips(
    records: Sequence[LoggedRecord],
    target: TargetPolicy,
    *,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    max_weight: float | None = None,
) -> Estimate:
    """Self-normalised IPS: sum w r / sum w. Slightly biased, much lower variance; error by the delta method."""
    weights = _weights(records, target, min_propensity, max_weight)
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("the target policy gives zero probability to every logged action")
    value = math.fsum(w * r.reward for w, r in zip(weights, records, strict=True)) / total
    mean_weight = total / len(weights)
    terms = [w * (r.reward - value) / mean_weight for w, r in zip(weights, records, strict=True)]
    estimate = _summary(terms, weights)
    return Estimate(value, estimate.std_error, estimate.n, estimate.effective_sample_size)


def doubly_robust(
    records: Sequence[LoggedRecord],
    target: TargetPolicy,
    reward_model: RewardModel,
    *,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    max_weight: float | None = None,
) -> Estimate:
    """Doubly robust: the reward model's value under pi plus an IPS correction of its residual.

    Unbiased when either the propensities or the reward model are right.
    """
    terms = []
    weights = []
    for record in records:
        probabilities = target(record.features)
        direct = math.fsum(p * reward_model(record.features, a) for a, p in probabilities.items() if p > 0)
        w = probabilities.get(record.action, 0.0) / max(record.propensity, min_propensity)
        if max_weight is not None:
            w = min(w, max_weight)
        weights.append(w)
        terms.append(direct + w * (record.reward - reward_model(record.features, record.action)))
    return _summary(terms, weights)


def fit_reward_model(records: Sequence[LoggedRecord], *, ridge: float = 1.0) -> RewardModel:
    """A per-action ridge regression of reward on the features (a simple model for doubly robust).

    An action never logged is predicted as the overall mean reward.
    """
    if not records:
        raise ValueError("no logged records to fit")
    dim = len(records[0].features)
    by_action: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        a, b = by_action.setdefault(
            record.action, ([ridge if i == j else 0.0 for i in range(dim) for j in range(dim)], [0.0] * dim)
        )
        x = record.features
        for i in range(dim):
            b[i] += record.reward * x[i]
            for j in range(dim):
                a[i * dim + j] += x[i] * x[j]
    coefficients = {action: mat_vec(invert(a, dim), b, dim) for action, (a, b) in by_action.items()}
    fallback = math.fsum(r.reward for r in records) / len(records)

    def predict(features: Sequence[float], action: str) -> float:
        theta = coefficients.get(action)
        if theta is None:
            return fallback
        return math.fsum(t * x for t, x in zip(theta, features, strict=False))

    return predict
