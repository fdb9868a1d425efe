"""Kernel and learner together in synthetic environments: learning policies beat random and fixed arms."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, snapshot_from_config
from atp_common.policy.features import FEATURE_DIM, FEATURE_NAMES
from atp_router.arm_learning import PolicyLearner

ARMS = ("a", "b", "c")
CODE = FEATURE_NAMES.index("has_code")
# Decisions between snapshots: the router publishes at a bounded rate, so the kernel decides on stale state.
REFRESH = 10


@dataclass
class Environment:
    """Mean reward of each arm given the context cue and the step; `noise` draws the observed reward."""

    mean: Callable[[str, bool, int], float]
    noise: Callable[[float, random.Random], float]
    contextual: bool = False


def _bernoulli(p: float, rng: random.Random) -> float:
    return 1.0 if rng.random() < p else 0.0


def _gaussian(mu: float, rng: random.Random) -> float:
    return min(max(rng.gauss(mu, 0.15), 0.0), 1.0)


def _config(policy: str, exploration: float) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"p": {"type": "local"}},
            "models": {m: {"provider": "p", "quality_prior": 0.5} for m in ARMS},
            "routes": {"r": {"candidates": list(ARMS), "policy": policy, "exploration": exploration}},
            "default_route": "r",
        }
    )


def _features(code: bool) -> chat_pb2.RequestFeatures:
    vector = [0.0] * FEATURE_DIM
    vector[0] = 1.0
    vector[CODE] = 1.0 if code else 0.0
    return chat_pb2.RequestFeatures(estimated_prompt_tokens=100, vector=vector)


def run(
    env: Environment,
    chooser: str,
    horizon: int,
    seed: int,
    *,
    exploration: float = 1.0,
    decay: float = 1.0,
) -> tuple[float, list[str]]:
    """Cumulative regret of a policy (or `uniform`, or `fixed:<arm>`) and the arms it pulled."""
    rng = random.Random(seed)
    learning = chooser in ("thompson", "ucb", "linucb")
    config = _config(chooser if learning else "static", exploration)
    learner = PolicyLearner(config, decay=decay)
    compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, 0))
    regret = 0.0
    pulled: list[str] = []
    for step in range(horizon):
        code = env.contextual and rng.random() < 0.5
        features = _features(code)
        if chooser == "uniform":
            arm = rng.choice(ARMS)
        elif chooser.startswith("fixed:"):
            arm = chooser.removeprefix("fixed:")
        else:
            if step % REFRESH == 0:
                compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, step, learner.export()))
            arm = compiled.decide("r", "", features, rng).candidates[0].model
        mean = env.mean(arm, code, step)
        regret += max(env.mean(a, code, step) for a in ARMS) - mean
        reward = env.noise(mean, rng)
        pulled.append(arm)
        if not learning:
            # A baseline ignores what it learns, and neither the learner nor the snapshots draw from rng,
            # so skipping them leaves its regret exactly as it was.
            continue
        learner.apply(
            observer_pb2.RewardEvent(
                route="r",
                model=arm,
                policy=chooser,
                reward=reward,
                quality=reward,
                features=features.vector,
            )
        )
    return regret, pulled


BERNOULLI = Environment(lambda arm, code, step: {"a": 0.3, "b": 0.5, "c": 0.7}[arm], _bernoulli)
GAUSSIAN = Environment(lambda arm, code, step: {"a": 0.4, "b": 0.5, "c": 0.6}[arm], _gaussian)
# a pays off on code, b on everything else, c is middling everywhere: no single arm is good.
CONTEXTUAL = Environment(
    lambda arm, code, step: {"a": 0.85 if code else 0.15, "b": 0.15 if code else 0.85, "c": 0.5}[arm],
    _bernoulli,
    contextual=True,
)


@pytest.mark.parametrize("env", [BERNOULLI, GAUSSIAN], ids=["bernoulli", "gaussian"])
@pytest.mark.parametrize("chooser", ["thompson", "ucb"])
def test_bandits_beat_random_and_a_fixed_arm(env: Environment, chooser: str) -> None:
    # Long enough that every assertion holds with room on seeds beyond these two (docs/design-notes.md,
    # "Test tiers and coverage"); a shorter run only leaves a slow learner less time.
    horizon = 1000
    exploration = 0.5 if chooser == "ucb" else 1.0
    for seed in (1, 2):
        learned, pulled = run(env, chooser, horizon, seed, exploration=exploration)
        uniform, _ = run(env, "uniform", horizon, seed)
        fixed, _ = run(env, "fixed:b", horizon, seed)
        assert learned < 0.5 * uniform, (learned, uniform)
        assert learned < 0.5 * fixed, (learned, fixed)
        # The best arm dominates the second half.
        assert Counter(pulled[horizon // 2 :])["c"] > 0.75 * (horizon // 2)


def test_linucb_learns_which_arm_suits_the_context() -> None:
    horizon = 750  # as above: the ratios stay far under their bounds on other seeds too
    for seed in (1, 2):
        learned, _ = run(CONTEXTUAL, "linucb", horizon, seed, exploration=0.5)
        uniform, _ = run(CONTEXTUAL, "uniform", horizon, seed)
        best_fixed = min(run(CONTEXTUAL, f"fixed:{arm}", horizon, seed)[0] for arm in ARMS)
        non_contextual, _ = run(CONTEXTUAL, "thompson", horizon, seed)
        assert learned < 0.4 * uniform, (learned, uniform)
        assert learned < 0.4 * best_fixed, (learned, best_fixed)
        assert learned < 0.5 * non_contextual, (learned, non_contextual)


def _degrading(switch: int) -> Environment:
    # a is best until `switch`, then drops below both others; b becomes best.
    def mean(arm: str, code: bool, step: int) -> float:
        if arm == "a":
            return 0.85 if step < switch else 0.15
        return {"b": 0.6, "c": 0.4}[arm]

    return Environment(mean, _bernoulli)


@pytest.mark.parametrize("chooser", ["thompson", "ucb"])
def test_decay_recovers_after_an_arm_degrades(chooser: str) -> None:
    horizon, switch = 1600, 800
    env = _degrading(switch)
    exploration = 0.3 if chooser == "ucb" else 1.0
    decayed, pulled = run(env, chooser, horizon, 3, exploration=exploration, decay=0.98)
    steady, steady_pulled = run(env, chooser, horizon, 3, exploration=exploration)
    uniform, _ = run(env, "uniform", horizon, 3)
    assert decayed < 0.5 * uniform, (decayed, uniform)
    assert decayed < steady, (decayed, steady)
    # After the switch the decayed learner moves to b within a few dozen pulls.
    last_quarter = Counter(pulled[-horizon // 4 :])
    assert last_quarter["b"] > 0.6 * (horizon // 4), last_quarter
    tail_after_switch = Counter(pulled[switch + 100 : switch + 300])
    steady_tail = Counter(steady_pulled[switch + 100 : switch + 300])
    assert tail_after_switch["a"] < steady_tail["a"], (tail_after_switch, steady_tail)
