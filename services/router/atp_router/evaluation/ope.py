"""`atp-eval ope`: what a candidate policy would have earned on a route's logged decisions (IPS, SNIPS, DR)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from atp.common.v1 import chat_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, snapshot_from_config
from atp_common.policy.features import MAX_PROMPT_KILOTOKENS
from atp_router.evaluation.logs import LoggedOutcome
from atp_router.evaluation.offpolicy import LoggedRecord, fit_reward_model

# Logged propensities below this are clipped (the weight of one record stays bounded).
MIN_PROPENSITY = 1e-3
BOOTSTRAP_SAMPLES = 1000
TENANT = "atp-eval-ope"

Target = Callable[[Sequence[float]], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"value": self.value, "low": self.low, "high": self.high}


def features_from_vector(vector: Sequence[float]) -> chat_pb2.RequestFeatures:
    """The request features a decision needs, recovered from a logged context vector (the kernel's order:
    1 is ln(1 + prompt tokens) / 10, 11 is ln(1 + max_tokens) / 10, 12 the capped kilotokens)."""
    tokens = round(math.expm1(vector[1] * 10.0)) if len(vector) > 1 else 0
    if len(vector) > 12 and vector[12] < MAX_PROMPT_KILOTOKENS:
        tokens = round(vector[12] * 1000.0)
    max_output = round(math.expm1(vector[11] * 10.0)) if len(vector) > 11 and vector[11] > 0 else 0
    return chat_pb2.RequestFeatures(
        estimated_prompt_tokens=max(tokens, 0), max_output_tokens=max(max_output, 0), vector=vector
    )


def config_target(config: AtpConfig, route: str) -> Target:
    """The candidate `route` of `config` as a target policy: its probability of each model per context.

    The candidate starts as it would be deployed (its artifact's fit, or its priors); with epsilon it
    spreads epsilon over the candidates, as the kernel does.
    """
    if route not in config.routes:
        raise ValueError(f"the candidate configuration has no route {route!r}")
    compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, 1))
    epsilon = config.routes[route].epsilon if config.routes[route].policy in ("ucb", "linucb") else 0.0

    def target(vector: Sequence[float]) -> Mapping[str, float]:
        decision = compiled.decide(route, TENANT, features_from_vector(vector))
        names = [c.model for c in decision.candidates]
        if epsilon <= 0:
            return {decision.candidates[0].model: 1.0}
        share = epsilon / len(names)
        probabilities = dict.fromkeys(names, share)
        probabilities[names[0]] += 1.0 - epsilon
        return probabilities

    return target


def estimate(
    logged: Sequence[LoggedOutcome],
    target: Target,
    *,
    value: str = "reward",
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """IPS, SNIPS and doubly robust estimates of the target's mean `value` (reward or quality), with 95%
    bootstrap percentile intervals (the records resampled with replacement; the DR reward model is fitted
    once on all records, a small optimism the interval does not include)."""
    if not logged:
        raise ValueError("no logged decisions to evaluate")
    records = [
        LoggedRecord(o.features, o.model, o.propensity, o.reward if value == "reward" else o.quality)
        for o in logged
    ]
    model = fit_reward_model(records)
    probabilities = [target(r.features) for r in records]
    weights = np.array(
        [
            p.get(r.action, 0.0) / max(r.propensity, MIN_PROPENSITY)
            for p, r in zip(probabilities, records, strict=True)
        ]
    )
    rewards = np.array([r.reward for r in records])
    direct = np.array(
        [
            math.fsum(q * model(r.features, a) for a, q in p.items() if q > 0)
            for p, r in zip(probabilities, records, strict=True)
        ]
    )
    residual = np.array([r.reward - model(r.features, r.action) for r in records])

    def values(index: np.ndarray) -> tuple[float, float, float]:
        w, r = weights[index], rewards[index]
        total = w.sum()
        return (
            float(np.mean(w * r)),
            float((w * r).sum() / total) if total > 0 else float("nan"),
            float(np.mean(direct[index] + w * residual[index])),
        )

    n = len(records)
    point = values(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = np.array([values(rng.integers(0, n, n)) for _ in range(samples)])
    names = ("ips", "snips", "doubly_robust")
    out: dict[str, object] = {
        name: Interval(
            point[i], float(np.nanpercentile(draws[:, i], 2.5)), float(np.nanpercentile(draws[:, i], 97.5))
        ).as_dict()
        for i, name in enumerate(names)
    }
    out["logged_mean"] = float(rewards.mean())
    out["records"] = n
    out["effective_sample_size"] = float(weights.sum() ** 2 / max(float((weights**2).sum()), 1e-12))
    out["matching_share"] = float(np.mean(weights > 0))
    out["value"] = value
    return out
