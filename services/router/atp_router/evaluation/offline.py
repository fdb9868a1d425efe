"""The evaluation's configuration, and replays through the policy kernel and learner in this process."""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, compute_features, snapshot_from_config
from atp_router.arm_learning import PolicyLearner
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


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """The evaluated route's routing options beyond the cost weight (defaults: today's LinUCB)."""

    policy: str = "linucb"
    exploration: float = DEFAULT_EXPLORATION
    artifact: str | None = None
    semantic: bool = False
    quality_floor: float = 0.0
    epsilon: float = 0.0
    prior_rows: float = 200.0
    objective: str | None = None
    # The requests' declared output budget (max_tokens), when the replay sets one: the known price of a
    # request counts it instead of the default completion length.
    max_tokens: int | None = None
    # The swept knob: the cost weight, or the quality floor (a fraction of the best predicted quality,
    # known-cost routes) at cost weight 0.
    knob: str = "cost_weight"

    def at(self, value: float) -> tuple[float, RouteOptions]:
        """(cost weight, options) of the sweep point `value` of the knob."""
        if self.knob == "quality_floor":
            return 0.0, replace(self, quality_floor=value)
        return value, self

    def params(self) -> chat_pb2.GenerationParams:
        """The generation parameters each replayed request carries."""
        if self.max_tokens is None:
            return _NO_PARAMS
        return chat_pb2.GenerationParams(max_tokens=self.max_tokens)

    def route_fields(self) -> dict[str, object]:
        """The route's configuration fields."""
        fields: dict[str, object] = {"policy": self.policy, "exploration": self.exploration}
        if self.artifact:
            fields["artifact"] = str(Path(self.artifact).resolve())
            fields["prior_rows"] = self.prior_rows
        if self.semantic:
            fields["semantic"] = True
        if self.quality_floor:
            fields["quality_floor"] = self.quality_floor
        if self.epsilon:
            fields["epsilon"] = self.epsilon
        if self.objective:
            fields["objective"] = self.objective
        return fields


def eval_config(
    dataset: Dataset,
    *,
    cost_weight: float,
    policy: str = "linucb",
    exploration: float = DEFAULT_EXPLORATION,
    options: RouteOptions | None = None,
) -> AtpConfig:
    """One route over the dataset's models, priced as the dataset says, learning from a neutral prior."""
    options = options or RouteOptions(policy=policy, exploration=exploration)
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
                    "cost_weight": cost_weight,
                    **options.route_fields(),
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
    options: RouteOptions | None = None,
) -> list[str]:
    """Route every prompt in order with the kernel, learning online; returns the chosen model per prompt.

    Mirrors the services: features from the request alone, the reward the observer computes (quality
    minus cost_weight * cost; no latency), the router's PolicyLearner, and a new snapshot every
    `republish_every` decisions (the router's rate bound, counted in requests instead of seconds).
    """
    config = eval_config(
        dataset, cost_weight=cost_weight, policy=policy, exploration=exploration, options=options
    )
    learner = PolicyLearner(config)
    version = 1
    compiled = CompiledPolicy.from_snapshot(snapshot_from_config(config, version))
    rng = random.Random(seed)
    params = (options or RouteOptions()).params()
    choices: list[str] = []
    for cursor, prompt in enumerate(dataset.prompts, 1):
        request = messages(prompt)
        features = compute_features(request, params, False)
        encoder = compiled.semantic_encoder(ROUTE)
        if encoder is not None:
            features.vector.extend(encoder.encode(request))
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


def _replay_task(args: tuple[Dataset, float, str, float, int, int, RouteOptions | None]) -> list[str]:
    dataset, value, policy, exploration, republish_every, seed, options = args
    cost_weight, options = (options or RouteOptions(policy=policy, exploration=exploration)).at(value)
    return replay_in_process(
        dataset,
        cost_weight,
        policy=policy,
        exploration=exploration,
        republish_every=republish_every,
        seed=seed,
        options=options,
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
    options: RouteOptions | None = None,
) -> list[list[str]]:
    """replay_in_process at each cost weight, `workers` processes at a time (each pass is sequential)."""
    tasks = [(dataset, w, policy, exploration, republish_every, seed, options) for w in cost_weights]
    if workers <= 1 or len(tasks) <= 1:
        return [_replay_task(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        return list(pool.map(_replay_task, tasks))
