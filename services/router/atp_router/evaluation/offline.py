"""The evaluation's configuration, and replays through the policy kernel and learner in this process."""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, PolicyLearner, compute_features, snapshot_from_config
from atp_router.evaluation.dataset import Dataset, Prompt

ROUTE = "eval"
TENANT = "atp-eval"
PROVIDER = "eval"
# Learning from zero: every model starts from the same uninformative quality prior.
NEUTRAL_PRIOR = 0.5
# Large enough that no evaluation prompt is filtered by its context window.
CONTEXT_WINDOW = 10_000_000
# LinUCB's alpha for the evaluation route (tuned on mmlu_dev; see the README's "Routing quality").
DEFAULT_EXPLORATION = 1.0
_NO_PARAMS = chat_pb2.GenerationParams()


def eval_config(
    dataset: Dataset, *, cost_weight: float, policy: str = "linucb", exploration: float = DEFAULT_EXPLORATION
) -> AtpConfig:
    """One route over the dataset's models, priced as the dataset says, learning from a neutral prior."""
    return AtpConfig.model_validate(
        {
            "providers": {PROVIDER: {"type": "local"}},
            "models": {
                model: {
                    "provider": PROVIDER,
                    "input_usd_per_mtok": dataset.prices[model][0],
                    "output_usd_per_mtok": dataset.prices[model][1],
                    "context_window": CONTEXT_WINDOW,
                    "quality_prior": NEUTRAL_PRIOR,
                }
                for model in dataset.models
            },
            "routes": {
                ROUTE: {
                    "candidates": list(dataset.models),
                    "policy": policy,
                    "cost_weight": cost_weight,
                    "exploration": exploration,
                }
            },
            "default_route": ROUTE,
        }
    )


def messages(prompt: Prompt) -> list[chat_pb2.ChatMessage]:
    """The request a client would send: the prompt text as one user message, nothing else."""
    return [chat_pb2.ChatMessage(role="user", content=prompt.text)]


def replay_in_process(
    dataset: Dataset,
    cost_weight: float,
    *,
    policy: str = "linucb",
    exploration: float = DEFAULT_EXPLORATION,
    republish_every: int = 1,
    seed: int = 0,
) -> list[str]:
    """Route every prompt in order with the kernel, learning online; returns the chosen model per prompt.

    Mirrors the services: features from the request alone, the reward the observer computes (quality
    minus cost_weight * cost; no latency), the router's PolicyLearner, and a new snapshot every
    `republish_every` decisions (the router's rate bound, counted in requests instead of seconds).
    """
    config = eval_config(dataset, cost_weight=cost_weight, policy=policy, exploration=exploration)
    learner = PolicyLearner(config)
    version = 1
    compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, version))
    rng = random.Random(seed)
    choices: list[str] = []
    for cursor, prompt in enumerate(dataset.prompts, 1):
        features = compute_features(messages(prompt), _NO_PARAMS, False)
        decision = compiled.decide(ROUTE, TENANT, features, rng)
        chosen = decision.candidates[0].model
        choices.append(chosen)
        quality = prompt.quality[chosen]
        cost = dataset.cost(prompt, chosen)
        learner.apply(
            observer_pb2.RewardEvent(
                cursor=cursor,
                decision_id=decision.decision_id,
                tenant=TENANT,
                route=ROUTE,
                model=chosen,
                policy=decision.policy,
                reward=quality - cost_weight * cost,
                quality=quality,
                cost_usd=cost,
                propensity=decision.propensity,
                features=features.vector,
            )
        )
        if cursor % republish_every == 0:
            version += 1
            compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, version, learner.export()))
    return choices


def _replay_task(args: tuple[Dataset, float, str, float, int, int]) -> list[str]:
    dataset, cost_weight, policy, exploration, republish_every, seed = args
    return replay_in_process(
        dataset,
        cost_weight,
        policy=policy,
        exploration=exploration,
        republish_every=republish_every,
        seed=seed,
    )


def sweep_in_process(
    dataset: Dataset,
    cost_weights: Sequence[float],
    *,
    policy: str = "linucb",
    exploration: float = DEFAULT_EXPLORATION,
    republish_every: int = 1,
    seed: int = 0,
    workers: int = 2,
) -> list[list[str]]:
    """replay_in_process at each cost weight, `workers` processes at a time (each pass is sequential)."""
    tasks = [(dataset, w, policy, exploration, republish_every, seed) for w in cost_weights]
    if workers <= 1 or len(tasks) <= 1:
        return [_replay_task(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        return list(pool.map(_replay_task, tasks))
