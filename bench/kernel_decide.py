"""Prints what the policy kernel costs per request: compute_features and decide() per policy, in microseconds."""

from __future__ import annotations

import random
import timeit

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, compute_features, snapshot_from_config
from atp_router.arm_learning import PolicyLearner

ROUNDS = 5_000


def _config() -> AtpConfig:
    models = {
        f"m{i}": {
            "provider": "local",
            "input_usd_per_mtok": 0.1 * (i + 1),
            "output_usd_per_mtok": 0.4 * (i + 1),
            "context_window": 32768,
            "capabilities": ["streaming", "json", "tools"],
            "quality_prior": 0.5 + 0.1 * i,
        }
        for i in range(3)
    }
    candidates = list(models)
    routes = {
        policy: {"candidates": candidates, "policy": policy, "cost_weight": 10.0, "quality_floor": 0.55}
        for policy in ("static", "cheapest", "thompson", "ucb", "linucb")
    }
    routes["weighted"] = {"candidates": candidates, "policy": "static", "weights": [0.8, 0.1, 0.1]}
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": models,
            "routes": routes,
            "default_route": "static",
        }
    )


def main() -> None:
    """Time each step and print microseconds per call."""
    config = _config()
    rng = random.Random(7)
    messages = [
        chat_pb2.ChatMessage(role="system", content="You are a helpful assistant."),
        chat_pb2.ChatMessage(role="user", content="How do I reverse a list in Python? " * 20),
    ]
    params = chat_pb2.GenerationParams(max_tokens=512)
    features = compute_features(messages, params, True)
    learner = PolicyLearner(config)
    for n in range(2000):
        route = list(config.routes)[n % len(config.routes)]
        learner.apply(
            observer_pb2.RewardEvent(
                route=route,
                model=f"m{n % 3}",
                reward=rng.random(),
                quality=rng.random(),
                features=features.vector,
            )
        )
    snapshot = snapshot_from_config(config, 1, learner.export())
    policy = CompiledPolicy.from_snapshot(snapshot)

    def per_call(fn) -> float:
        # The minimum of a few repeats: the least disturbed by other work on a shared machine.
        return min(timeit.repeat(fn, number=ROUNDS, repeat=5)) / ROUNDS * 1e6

    print(f"compute_features            {per_call(lambda: compute_features(messages, params, True)):8.2f} us")
    print(f"CompiledPolicy.from_snapshot {per_call(lambda: CompiledPolicy.from_snapshot(snapshot)):7.2f} us")
    for route in ("static", "weighted", "cheapest", "thompson", "ucb", "linucb"):
        print(f"decide {route:<21}{per_call(lambda r=route: policy.decide(r, 't', features, rng)):8.2f} us")
    print(f"decide direct               {per_call(lambda: policy.decide('m1', 't', features, rng)):8.2f} us")


if __name__ == "__main__":
    main()
