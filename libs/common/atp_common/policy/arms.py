"""What the kernel compiles a snapshot into: models, arms and routes, and each policy's ranking."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from operator import mul
from types import MappingProxyType
from typing import Any

from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2
from atp_common import capabilities
from atp_common.errors import ConfigError
from atp_common.policy._math import (
    DEFAULT_OUTPUT_TOKENS,
    REFERENCE_PROMPT_TOKENS,
    RIDGE,
    UNTRIED_SCORE,
    BetaGrid,
    beta_prior,
    beta_win_probability,
)
from atp_common.policy.costaware import rank_known_cost
from atp_common.policy.features import FEATURE_DIM

POLICY_NAMES: Mapping[int, str] = MappingProxyType(
    {
        router_pb2.POLICY_KIND_UNSPECIFIED: "static",
        router_pb2.POLICY_KIND_STATIC: "static",
        router_pb2.POLICY_KIND_CHEAPEST: "cheapest",
        router_pb2.POLICY_KIND_THOMPSON: "thompson",
        router_pb2.POLICY_KIND_UCB: "ucb",
        router_pb2.POLICY_KIND_LINUCB: "linucb",
    }
)
# Keep propensities off zero so inverse-propensity weights stay finite.
MIN_PROPENSITY = 1e-4
# Cached Thompson propensities per route; cleared when full (keys are per tenant and survivor set).
_PROPENSITY_CACHE_SIZE = 4096

TOOLS = capabilities.BY_NAME["tools"].bit
VISION = capabilities.BY_NAME["vision"].bit
JSON = capabilities.BY_NAME["json"].bit
STREAMING = capabilities.BY_NAME["streaming"].bit


class Model:
    """A model as the kernel needs it, prices per token."""

    __slots__ = (
        "context_window",
        "input_per_token",
        "max_output",
        "name",
        "output_per_token",
        "provider",
        "quality_prior",
        "regions",
        "spec",
        "supported",
    )

    def __init__(self, spec: router_pb2.ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.provider = spec.provider
        self.input_per_token = spec.input_usd_per_mtok / 1e6
        self.output_per_token = spec.output_usd_per_mtok / 1e6
        self.context_window = spec.context_window
        # The most output a request can be sent (max_tokens above it goes as it); no bound when unset.
        self.max_output = spec.max_output_tokens or 1 << 62
        self.quality_prior = spec.quality_prior
        self.regions = tuple(spec.regions)
        supported = spec.supported_features
        if not supported:
            # A snapshot from a router that predates feature bits: only the four old flags are known.
            supported = capabilities.ALL_BITS & ~(
                (0 if spec.supports_tools else TOOLS)
                | (0 if spec.supports_vision else VISION)
                | (0 if spec.supports_json else JSON)
                | (0 if spec.supports_streaming else STREAMING)
            )
        self.supported = supported

    def expected_cost(self, features: chat_pb2.RequestFeatures) -> float:
        output = features.max_output_tokens or DEFAULT_OUTPUT_TOKENS
        return self.input_per_token * features.estimated_prompt_tokens + self.output_per_token * output


class Arm:
    """One arm's statistics, digested once per snapshot into what each policy reads."""

    __slots__ = (
        "a_inv",
        "alpha",
        "beta",
        "dense",
        "grid",
        "mean_reward",
        "model",
        "penalty",
        "pulls",
        "quality_mean",
        "theta",
    )

    def __init__(
        self,
        model: Model,
        state: router_pb2.ArmState | None,
        weights: router_pb2.RewardWeights,
        dim: int,
    ):
        self.model = model
        pulls = state.pulls if state is not None else 0.0
        self.pulls = pulls
        self.mean_reward = state.reward_sum / pulls if state is not None and pulls > 0 else 0.0
        if state is not None and state.alpha > 0 and state.beta > 0:
            alpha, beta = state.alpha, state.beta
        else:
            alpha, beta = beta_prior(model.quality_prior)
        self.alpha, self.beta = alpha, beta
        total = alpha + beta
        self.quality_mean = alpha / total
        # Thompson's reward penalty: measured mean cost and latency once pulled; before that the list price
        # of a reference request (no latency), so the draw distribution is fixed per snapshot.
        if state is not None and pulls > 0:
            self.penalty = (
                weights.cost_weight * state.mean_cost_usd
                + weights.latency_weight * state.mean_latency_ms / 1000.0
            )
        else:
            reference = (
                model.input_per_token * REFERENCE_PROMPT_TOKENS
                + model.output_per_token * DEFAULT_OUTPUT_TOKENS
            )
            self.penalty = weights.cost_weight * reference
        # Discretised posterior for exact Thompson propensities, built on first use.
        self.grid: BetaGrid | None = None
        if state is not None and len(state.a_inv) == dim * dim and len(state.b) == dim:
            a_inv = list(state.a_inv)
            b = list(state.b)
        else:
            a_inv = [(1.0 / RIDGE if i == j else 0.0) for i in range(dim) for j in range(dim)]
            b = [0.0] * dim
            if dim:
                b[0] = RIDGE * model.quality_prior
        self.a_inv = tuple(tuple(a_inv[i * dim : (i + 1) * dim]) for i in range(dim))
        self.theta = tuple(sum(map(mul, row, b)) for row in self.a_inv)
        # numpy copies for dense (semantic) contexts, made on first use.
        self.dense: Any = None

    def expected_quality(self) -> float:
        """Learned mean quality (posterior mean) once pulled, the configured prior before."""
        return self.quality_mean if self.pulls > 0 else self.model.quality_prior


class Route:
    __slots__ = (
        "arms",
        "candidates",
        "cost_weight",
        "dim",
        "epsilon",
        "exploration",
        "kind",
        "known_cost",
        "name",
        "policy",
        "propensities",
        "quality_floor",
        "semantic",
        "tenant_arms",
        "weights",
    )

    def __init__(self, policy: router_pb2.RoutePolicy, models: Mapping[str, Model]):
        self.name = policy.name
        self.kind = policy.kind
        self.policy = POLICY_NAMES.get(policy.kind, "static")
        missing = [c for c in policy.candidates if c not in models]
        if missing:
            raise ConfigError(f"route {policy.name!r} names models missing from the snapshot: {missing}")
        self.candidates = tuple(models[c] for c in policy.candidates)
        weights = list(policy.static_weights)
        self.weights: dict[str, float] | None = None
        if len(weights) == len(self.candidates) and any(w > 0 for w in weights):
            self.weights = {c.name: max(w, 0.0) for c, w in zip(self.candidates, weights, strict=True)}
        self.cost_weight = policy.weights.cost_weight
        self.quality_floor = policy.quality_floor
        self.exploration = policy.exploration
        self.dim = policy.feature_dim or FEATURE_DIM
        by_model = {arm.model: arm for arm in policy.arms}
        self.arms = {c.name: Arm(c, by_model.get(c.name), policy.weights, self.dim) for c in self.candidates}
        self.tenant_arms: dict[str, dict[str, Arm]] = {}
        for entry in policy.tenant_arms:
            merged = dict(self.arms)
            for state in entry.arms:
                if state.model in merged:
                    merged[state.model] = Arm(models[state.model], state, policy.weights, self.dim)
            self.tenant_arms[entry.tenant] = merged
        self.propensities: dict[tuple[int, tuple[str, ...], int], float] = {}
        self.known_cost = policy.known_cost
        self.epsilon = policy.epsilon if policy.kind in MIXABLE else 0.0
        self.semantic = None
        if policy.HasField("semantic"):
            # Imported only for routes that use it; compiling here loads the model off the request path.
            from atp_common.policy.semantic import encoder_for

            self.semantic = encoder_for(policy.semantic)


class Ranking:
    """A policy's verdict: candidates in rank order with scores, the first one's propensity, and why."""

    __slots__ = ("models", "propensity", "scores", "why")

    def __init__(self, models: list[Model], scores: list[float], propensity: float, why: str):
        self.models = models
        self.scores = scores
        self.propensity = propensity
        self.why = why


def _ordered(models: list[Model], scores: list[float]) -> tuple[list[Model], list[float]]:
    # Highest score first; ties keep the configured order (sorted is stable).
    order = sorted(range(len(models)), key=scores.__getitem__, reverse=True)
    return [models[i] for i in order], [scores[i] for i in order]


def rank_static(
    route: Route,
    survivors: list[Model],
    arms: Mapping[str, Arm],
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> Ranking:
    n = len(survivors)
    weights = route.weights
    if weights is not None:
        shares = [weights[m.name] for m in survivors]
        total = sum(shares)
        if total > 0:
            # A weighted draw for first place among the survivors; the rest keep the configured order.
            point = rng.random() * total
            pick = n - 1
            for i, w in enumerate(shares):
                point -= w
                if point < 0 and w > 0:
                    pick = i
                    break
            while shares[pick] <= 0:
                pick -= 1
            order = [pick, *(i for i in range(n) if i != pick)]
            return Ranking(
                [survivors[i] for i in order],
                [shares[i] / total for i in order],
                shares[pick] / total,
                f"weighted draw, share {shares[pick] / total:.3f}",
            )
    return Ranking(survivors, [(n - i) / n for i in range(n)], 1.0, "configured order")


def _rank_cheapest(
    route: Route,
    survivors: list[Model],
    arms: Mapping[str, Arm],
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> Ranking:
    floor = route.quality_floor
    qualities = [arms[m.name].expected_quality() for m in survivors]
    costs = [m.expected_cost(features) for m in survivors]
    meets = [i for i, q in enumerate(qualities) if q >= floor]
    below = [i for i, q in enumerate(qualities) if q < floor]
    meets.sort(key=costs.__getitem__)
    below.sort(key=lambda i: -qualities[i])
    order = meets + below
    # Score: -expected cost (USD) for those meeting the floor, expected quality for those below it.
    scores = [-costs[i] for i in meets] + [qualities[i] for i in below]
    first = order[0]
    if meets:
        why = f"cheapest meeting quality floor {floor:g}: ${costs[first]:.6f}, quality {qualities[first]:.3f}"
    else:
        why = f"none meets quality floor {floor:g}, best quality {qualities[first]:.3f}"
    return Ranking([survivors[i] for i in order], scores, 1.0, why)


def _rank_thompson(
    route: Route,
    survivors: list[Model],
    arms: Mapping[str, Arm],
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> Ranking:
    samples = []
    for model in survivors:
        arm = arms[model.name]
        samples.append(rng.betavariate(arm.alpha, arm.beta) - arm.penalty)
    order = sorted(range(len(survivors)), key=samples.__getitem__, reverse=True)
    first = order[0]
    head = arms[survivors[first].name]
    return Ranking(
        [survivors[i] for i in order],
        [samples[i] for i in order],
        _thompson_propensity(route, survivors, arms, first),
        f"highest posterior draw {samples[first]:.3f}, mean {head.quality_mean - head.penalty:.3f}",
    )


def _thompson_propensity(route: Route, survivors: list[Model], arms: Mapping[str, Arm], first: int) -> float:
    """P(Thompson picks survivors[first]): exact integration over the Beta posteriors, cached.

    The draw distribution depends only on the snapshot, the arm set (global or a tenant's) and which
    candidates survived filtering, so each combination is integrated once per snapshot (the costly part) and
    then costs a dict lookup.
    """
    key = (id(arms), tuple(m.name for m in survivors), first)
    cached = route.propensities.get(key)
    if cached is not None:
        return cached
    chosen = [arms[m.name] for m in survivors]
    for arm in chosen:
        if arm.grid is None:
            arm.grid = BetaGrid(arm.alpha, arm.beta)
    grids = [arm.grid for arm in chosen if arm.grid is not None]
    probability = max(beta_win_probability(first, grids, [arm.penalty for arm in chosen]), MIN_PROPENSITY)
    if len(route.propensities) >= _PROPENSITY_CACHE_SIZE:
        route.propensities.clear()
    route.propensities[key] = probability
    return probability


def _rank_ucb(
    route: Route,
    survivors: list[Model],
    arms: Mapping[str, Arm],
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> Ranking:
    chosen_arms = [arms[m.name] for m in survivors]
    total = sum(arm.pulls for arm in chosen_arms)
    log_total = math.log(total) if total > 1.0 else 0.0
    c = route.exploration
    scores = [
        arm.mean_reward + c * math.sqrt(2.0 * log_total / arm.pulls)
        if arm.pulls > 0
        else UNTRIED_SCORE + arm.model.quality_prior
        for arm in chosen_arms
    ]
    models, scores = _ordered(survivors, scores)
    head = arms[models[0].name]
    why = "untried arm" if head.pulls <= 0 else f"upper bound {scores[0]:.3f}, mean {head.mean_reward:.3f}"
    return Ranking(models, scores, 1.0, why)


def _rank_linucb(
    route: Route,
    survivors: list[Model],
    arms: Mapping[str, Arm],
    features: chat_pb2.RequestFeatures,
    rng: random.Random,
) -> Ranking:
    dim = route.dim
    vector = features.vector
    if route.semantic is not None:
        from atp_common.policy.dense import upper_bounds

        scores = upper_bounds([arms[m.name] for m in survivors], vector, dim, route.exploration)
        return _linucb_ranking(route, survivors, scores, features)
    # Most context features are 0/1 cues, so x is sparse: work on its non-zero entries only.
    nonzero = [(j, float(v)) for j, v in enumerate(vector[:dim]) if v != 0.0] if vector else [(0, 1.0)]
    alpha = route.exploration
    scores = []
    for model in survivors:
        arm = arms[model.name]
        a_inv, theta = arm.a_inv, arm.theta
        mean = 0.0
        variance = 0.0
        for i, xi in nonzero:
            row = a_inv[i]
            mean += theta[i] * xi
            inner = 0.0
            for j, xj in nonzero:
                inner += row[j] * xj
            variance += xi * inner
        scores.append(mean + alpha * math.sqrt(variance if variance > 0 else 0.0))
    return _linucb_ranking(route, survivors, scores, features)


def _linucb_ranking(
    route: Route, survivors: list[Model], scores: list[float], features: chat_pb2.RequestFeatures
) -> Ranking:
    if route.known_cost:
        costs = [model.expected_cost(features) for model in survivors]
        order, ranked, why = rank_known_cost(scores, costs, route.cost_weight, route.quality_floor)
        return Ranking([survivors[i] for i in order], ranked, 1.0, why)
    models, scores = _ordered(survivors, scores)
    return Ranking(models, scores, 1.0, f"upper bound {scores[0]:.3f} for this context")


# Policies whose greedy choice may be mixed with a uniform draw, so their logs carry real propensities.
MIXABLE = frozenset({router_pb2.POLICY_KIND_UCB, router_pb2.POLICY_KIND_LINUCB})
RANKERS = {
    router_pb2.POLICY_KIND_STATIC: rank_static,
    router_pb2.POLICY_KIND_CHEAPEST: _rank_cheapest,
    router_pb2.POLICY_KIND_THOMPSON: _rank_thompson,
    router_pb2.POLICY_KIND_UCB: _rank_ucb,
    router_pb2.POLICY_KIND_LINUCB: _rank_linucb,
}
