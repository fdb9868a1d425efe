"""`atp-eval synthetic`: seeded bandit environments run through the policy kernel and learner, with regret."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import FEATURE_DIM, CompiledPolicy, snapshot_from_config
from atp_router.arm_learning import PolicyLearner

ROUTE = "synthetic"
TENANT = "atp-eval"
POLICIES = ("thompson", "ucb", "linucb", "random", "fixed")
# A request without text: only the bias feature, so LinUCB is a per-arm ridge regression on its mean.
_FEATURES = chat_pb2.RequestFeatures(estimated_prompt_tokens=100, vector=[1.0] + [0.0] * (FEATURE_DIM - 1))


@dataclass(frozen=True, slots=True)
class Environment:
    """Arms with a mean quality and a cost per request that may change at step `change_at`."""

    name: str
    kind: str  # "bernoulli" or "gaussian" (quality ~ N(mean, sd), clipped to 0..1)
    means: Sequence[float]
    costs: Sequence[float]
    cost_weight: float
    steps: int = 2000
    sd: float = 0.2
    change_at: int | None = None
    means_after: Sequence[float] | None = None
    costs_after: Sequence[float] | None = None
    # Discount of old rewards for the learners (the router's learning_decay); < 1 for changing worlds.
    decay: float = 1.0
    arms: tuple[str, ...] = field(default=())

    def names(self) -> tuple[str, ...]:
        """Arm (model) names."""
        return self.arms or tuple(f"arm-{i}" for i in range(len(self.means)))

    def at(self, step: int) -> tuple[Sequence[float], Sequence[float]]:
        """(means, costs) in force at `step`."""
        if self.change_at is not None and step >= self.change_at:
            return self.means_after or self.means, self.costs_after or self.costs
        return self.means, self.costs

    def expected_rewards(self, step: int) -> list[float]:
        """Each arm's expected reward (quality - cost_weight * cost) at `step`."""
        means, costs = self.at(step)
        return [m - self.cost_weight * c for m, c in zip(means, costs, strict=True)]

    def draw(self, step: int, arm: int, rng: random.Random) -> float:
        """A quality outcome of `arm` at `step`."""
        mean = self.at(step)[0][arm]
        if self.kind == "bernoulli":
            return 1.0 if rng.random() < mean else 0.0
        return min(max(rng.gauss(mean, self.sd), 0.0), 1.0)


def environments(steps: int = 2000) -> list[Environment]:
    """The standard set: stationary Bernoulli and Gaussian, a model that degrades mid-run, a price change."""
    half = steps // 2
    return [
        Environment("bernoulli", "bernoulli", [0.55, 0.70, 0.80], [0.0002, 0.001, 0.004], 20.0, steps),
        Environment(
            "gaussian",
            "gaussian",
            [0.40, 0.50, 0.60, 0.65, 0.72],
            [0.0001, 0.0005, 0.001, 0.002, 0.005],
            20.0,
            steps,
        ),
        Environment(
            "degrading",
            "bernoulli",
            [0.55, 0.65, 0.85],
            [0.001, 0.001, 0.001],
            20.0,
            steps,
            change_at=half,
            means_after=[0.55, 0.65, 0.30],
            decay=0.99,
        ),
        Environment(
            "price-change",
            "bernoulli",
            [0.70, 0.80],
            [0.0005, 0.002],
            20.0,
            steps,
            change_at=half,
            costs_after=[0.0005, 0.02],
            decay=0.99,
        ),
    ]


@dataclass(frozen=True, slots=True)
class Regret:
    """Cumulative expected regret of one policy in one environment (mean over seeds)."""

    environment: str
    policy: str
    vs_best_fixed: float
    vs_oracle: float
    mean_reward: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "environment": self.environment,
            "policy": self.policy,
            "regret_vs_best_fixed": self.vs_best_fixed,
            "regret_vs_oracle": self.vs_oracle,
            "mean_reward": self.mean_reward,
        }


def _config(env: Environment, policy: str, exploration: float) -> AtpConfig:
    names = env.names()
    kind = {"random": "static", "fixed": "static"}.get(policy, policy)
    route: dict[str, object] = {
        "candidates": list(names),
        "policy": kind,
        "cost_weight": env.cost_weight,
        "exploration": exploration,
    }
    if policy == "random":
        route["weights"] = [1.0] * len(names)
    return AtpConfig.model_validate(
        {
            "providers": {"synthetic": {"type": "local"}},
            "models": {n: {"provider": "synthetic", "quality_prior": 0.5} for n in names},
            "routes": {ROUTE: route},
            "default_route": ROUTE,
        }
    )


def run_policy(
    env: Environment, policy: str, seed: int, *, exploration: float = 0.5, republish_every: int = 10
) -> list[int]:
    """The arm index chosen at each step by `policy` ("fixed": always the first arm) learning online."""
    config = _config(env, policy, exploration)
    learner = PolicyLearner(config, decay=env.decay)
    compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, 1))
    decide_rng, world_rng = random.Random(seed), random.Random(seed + 1_000_003)
    index = {name: i for i, name in enumerate(env.names())}
    chosen: list[int] = []
    for step in range(env.steps):
        decision = compiled.decide(ROUTE, TENANT, _FEATURES, decide_rng)
        arm = index[decision.candidates[0].model]
        chosen.append(arm)
        quality = env.draw(step, arm, world_rng)
        cost = env.at(step)[1][arm]
        learner.apply(
            observer_pb2.RewardEvent(
                cursor=step + 1,
                tenant=TENANT,
                route=ROUTE,
                model=decision.candidates[0].model,
                policy=decision.policy,
                reward=quality - env.cost_weight * cost,
                quality=quality,
                cost_usd=cost,
                propensity=decision.propensity,
                features=_FEATURES.vector,
            )
        )
        if (step + 1) % republish_every == 0:
            snapshot = snapshot_from_config(config, step + 2, learner.export())
            compiled = CompiledPolicy.from_snapshot(snapshot)
    return chosen


def regret(env: Environment, chosen: Sequence[int]) -> tuple[float, float, float]:
    """(regret vs the best fixed arm in hindsight, regret vs the per-step oracle, mean expected reward)."""
    per_step = [env.expected_rewards(step) for step in range(len(chosen))]
    earned = sum(rewards[arm] for rewards, arm in zip(per_step, chosen, strict=True))
    arms = len(per_step[0])
    best_fixed = max(sum(rewards[a] for rewards in per_step) for a in range(arms))
    oracle = sum(max(rewards) for rewards in per_step)
    return best_fixed - earned, oracle - earned, earned / len(chosen)


def evaluate(
    envs: Sequence[Environment],
    policies: Sequence[str] = POLICIES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    exploration: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> list[Regret]:
    """Regret of every policy in every environment, averaged over `seeds`."""
    results = []
    for env in envs:
        for policy in policies:
            runs = [regret(env, run_policy(env, policy, seed, exploration=exploration)) for seed in seeds]
            n = len(runs)
            results.append(
                Regret(
                    env.name,
                    policy,
                    math.fsum(r[0] for r in runs) / n,
                    math.fsum(r[1] for r in runs) / n,
                    math.fsum(r[2] for r in runs) / n,
                )
            )
            if progress is not None:
                progress(f"{env.name} {policy}")
    return results
