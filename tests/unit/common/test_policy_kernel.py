"""The policy kernel: constraint filtering and its errors, each policy's ranking and propensity."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2
from atp_common.capabilities import feature_names
from atp_common.config import AtpConfig
from atp_common.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from atp_common.policy import CompiledPolicy, compute_features, snapshot_from_config
from atp_common.policy.features import FEATURE_DIM

MODELS: dict[str, dict[str, Any]] = {
    "small": {
        "provider": "p1",
        "input_usd_per_mtok": 0.1,
        "output_usd_per_mtok": 0.4,
        "context_window": 4096,
        "capabilities": ["streaming", "json"],
        "quality_prior": 0.5,
    },
    "medium": {
        "provider": "p1",
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 4.0,
        "context_window": 32768,
        "capabilities": ["streaming", "json", "tools"],
        "quality_prior": 0.7,
    },
    "large": {
        "provider": "p2",
        "input_usd_per_mtok": 5.0,
        "output_usd_per_mtok": 15.0,
        "context_window": 131072,
        "capabilities": ["streaming", "json", "tools", "vision"],
        "quality_prior": 0.9,
    },
}


def _config(
    routes: dict[str, Any] | None = None,
    tenants: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"p1": {"type": "local"}, "p2": {"type": "local"}},
            "models": models or MODELS,
            "routes": routes or {"auto": {"candidates": ["small", "medium", "large"]}},
            "tenants": tenants or {},
        }
    )


def _policy(config: AtpConfig, *, arms=None, exclusions=(), version: int = 3) -> CompiledPolicy:
    return CompiledPolicy.from_snapshot(snapshot_from_config(config, version, arms, exclusions))


def _features(prompt_tokens: int = 10, max_output: int = 0, **needs: bool) -> chat_pb2.RequestFeatures:
    vector = [1.0] + [0.0] * (FEATURE_DIM - 1)
    return chat_pb2.RequestFeatures(
        estimated_prompt_tokens=prompt_tokens, max_output_tokens=max_output, vector=vector, **needs
    )


def _order(decision: chat_pb2.Decision) -> list[str]:
    return [c.model for c in decision.candidates]


def test_snapshot_from_config_carries_models_routes_and_tenants() -> None:
    config = _config(
        {
            "auto": {"candidates": ["small", "large"], "policy": "thompson", "cost_weight": 2.0},
            "canary": {"candidates": ["small", "medium"], "weights": [0.9, 0.1]},
        },
        {"acme": {"allowed_models": ["small"]}, "open": {}},
    )
    exclusion = router_pb2.Exclusion(model="large", reason="circuit open")
    snapshot = snapshot_from_config(config, 7, exclusions=[exclusion])
    assert snapshot.version == 7 and snapshot.default_route == "auto"
    assert snapshot.config_digest == config.digest()
    large = next(m for m in snapshot.models if m.name == "large")
    assert large.supports_vision and large.supports_tools and large.context_window == 131072
    assert large.cached_input_usd_per_mtok == 5.0 and large.reasoning_usd_per_mtok == 15.0
    auto = next(r for r in snapshot.routes if r.name == "auto")
    assert auto.kind == router_pb2.POLICY_KIND_THOMPSON and auto.weights.cost_weight == 2.0
    assert auto.feature_dim == FEATURE_DIM
    canary = next(r for r in snapshot.routes if r.name == "canary")
    assert list(canary.static_weights) == pytest.approx([0.9, 0.1])
    assert [t.tenant for t in snapshot.tenants] == ["acme"]
    assert list(snapshot.exclusions) == [exclusion]


def test_decision_fields() -> None:
    policy = _policy(_config())
    features = _features()
    decision = policy.decide("", "t", features)
    assert re.fullmatch(r"[0-9a-f]{32}", decision.decision_id)
    assert decision.decision_id != policy.decide("", "t", features).decision_id
    assert decision.route == "auto" and decision.policy == "static"
    assert _order(decision) == ["small", "medium", "large"]
    assert [c.provider for c in decision.candidates] == ["p1", "p1", "p2"]
    assert decision.propensity == 1.0 and decision.policy_version == 3
    assert decision.features == features
    assert "static" in decision.explanation and "small" in decision.explanation


def test_concrete_model_is_a_direct_decision() -> None:
    decision = _policy(_config()).decide("medium", "t", _features())
    assert decision.policy == "direct" and decision.route == ""
    assert _order(decision) == ["medium"] and decision.propensity == 1.0


def test_unknown_name_lists_nothing_and_points_to_the_models_list() -> None:
    # The catalogue differs by tenant: the refusal names no route or model, GET /v1/models does.
    with pytest.raises(NotFound) as caught:
        _policy(_config()).decide("gpt-9", "t", _features())
    assert "gpt-9" in caught.value.message and "/v1/models" in caught.value.message
    assert "auto" not in caught.value.message and "large" not in caught.value.message
    with pytest.raises(NotFound) as long_name:
        _policy(_config()).decide("m" * 10_000, "t", _features())
    assert len(long_name.value.message) < 200


def test_context_and_capability_filtering_with_reasons() -> None:
    policy = _policy(_config())
    decision = policy.decide("auto", "t", _features(prompt_tokens=4000, max_output=200))
    assert _order(decision) == ["medium", "large"]
    assert [(f.model, f.reason) for f in decision.filtered] == [
        ("small", "context window 4096 < 4200 tokens needed")
    ]
    assert "1 filtered" in decision.explanation
    decision = policy.decide("auto", "t", _features(needs_tools=True))
    assert _order(decision) == ["medium", "large"] and decision.filtered[0].reason == "lacks tools"
    decision = policy.decide("auto", "t", _features(needs_vision=True, needs_tools=True))
    assert _order(decision) == ["large"]
    assert (
        decision.filtered[0].reason == "lacks tools, vision" and decision.filtered[1].reason == "lacks vision"
    )


def test_the_window_counts_no_more_output_than_the_model_writes() -> None:
    # medium writes at most 4,096 tokens: a larger max_tokens is sent as that, and the window counts that.
    policy = _policy(_config(models={**MODELS, "medium": {**MODELS["medium"], "max_output_tokens": 4096}}))
    decision = policy.decide("auto", "t", _features(prompt_tokens=20_000, max_output=32_000))
    assert _order(decision) == ["medium", "large"]
    assert [f.model for f in decision.filtered] == ["small"]
    # Unconfigured windows filter nothing: the provider judges.
    unknown = {**MODELS, "small": {k: v for k, v in MODELS["small"].items() if k != "context_window"}}
    policy = _policy(_config(models=unknown))
    assert "small" in _order(policy.decide("auto", "t", _features(prompt_tokens=500_000)))


def test_everything_filtered_by_the_request_is_invalid_argument() -> None:
    policy = _policy(_config())
    with pytest.raises(InvalidArgument) as caught:
        policy.decide("auto", "t", _features(prompt_tokens=200_000))
    assert "small: context window" in caught.value.message and "large: context window" in caught.value.message
    # Clients trim a conversation on OpenAI's code for it (Anthropic's clients on its words, from this).
    assert (caught.value.reason, caught.value.param) == (CONTEXT_LENGTH_EXCEEDED, "messages")
    with pytest.raises(InvalidArgument, match="lacks vision") as lacking:
        policy.decide("medium", "t", _features(needs_vision=True))
    assert lacking.value.reason is None


def test_streaming_capability() -> None:
    models = {**MODELS, "batch": {**MODELS["small"], "capabilities": ["json"]}}
    config = AtpConfig.model_validate(
        {
            "providers": {"p1": {"type": "local"}, "p2": {"type": "local"}},
            "models": models,
            "routes": {"auto": {"candidates": ["batch", "small"]}},
        }
    )
    policy = _policy(config)
    assert _order(policy.decide("auto", "t", _features(stream=True))) == ["small"]
    assert _order(policy.decide("auto", "t", _features(stream=False))) == ["batch", "small"]


def test_tenant_lists() -> None:
    config = _config(
        tenants={"acme": {"allowed_models": ["medium", "large"]}, "beta": {"denied_models": ["small"]}}
    )
    policy = _policy(config)
    decision = policy.decide("auto", "acme", _features())
    assert _order(decision) == ["medium", "large"]
    assert "allowed_models" in decision.filtered[0].reason
    assert _order(policy.decide("auto", "beta", _features())) == ["medium", "large"]
    assert _order(policy.decide("auto", "other", _features())) == ["small", "medium", "large"]
    with pytest.raises(PermissionDenied, match="small"):
        policy.decide("small", "acme", _features())


def test_exclusions_and_their_expiry() -> None:
    config = _config({"auto": {"candidates": ["small", "medium"]}})
    past = Timestamp(seconds=1)
    future = Timestamp()
    future.GetCurrentTime()
    future.seconds += 3600
    policy = _policy(
        config,
        exclusions=[
            router_pb2.Exclusion(model="small", reason="circuit open", until=future),
            router_pb2.Exclusion(model="medium", reason="unhealthy", until=past),
        ],
    )
    decision = policy.decide("auto", "t", _features())
    assert _order(decision) == ["medium"]
    assert decision.filtered[0].reason == "excluded: circuit open"
    policy = _policy(
        config, exclusions=[router_pb2.Exclusion(model=m, reason="down") for m in ("small", "medium")]
    )
    with pytest.raises(Unavailable, match="excluded: down"):
        policy.decide("auto", "t", _features())


def test_mixed_reasons_raise_the_error_of_the_furthest_candidate() -> None:
    config = _config(tenants={"acme": {"denied_models": ["small"]}})
    policy = _policy(config, exclusions=[router_pb2.Exclusion(model="large", reason="circuit open")])
    # small: denied; medium: lacks vision; large: fits but excluded -> the request could succeed later.
    with pytest.raises(Unavailable) as caught:
        policy.decide("auto", "acme", _features(needs_vision=True))
    assert "denied_models" in caught.value.message and "lacks vision" in caught.value.message
    policy = _policy(config)
    with pytest.raises(InvalidArgument):
        policy.decide("auto", "acme", _features(prompt_tokens=500_000))


def test_static_weights_split_traffic_as_their_propensity_says() -> None:
    config = _config({"auto": {"candidates": ["small", "medium", "large"], "weights": [0.6, 0.3, 0.1]}})
    policy = _policy(config)
    rng = random.Random(11)
    n = 20_000
    counts: Counter[str] = Counter()
    propensity: dict[str, float] = {}
    for _ in range(n):
        decision = policy.decide("auto", "t", _features(), rng)
        first = decision.candidates[0].model
        counts[first] += 1
        propensity[first] = decision.propensity
        assert len(decision.candidates) == 3
    assert propensity == pytest.approx({"small": 0.6, "medium": 0.3, "large": 0.1})
    for model, p in propensity.items():
        assert abs(counts[model] / n - p) < 0.015
    # With small filtered, the shares renormalise over the survivors.
    decision = policy.decide("auto", "t", _features(needs_tools=True), random.Random(1))
    assert decision.propensity in (pytest.approx(0.75), pytest.approx(0.25))


def test_cheapest_meets_the_quality_floor() -> None:
    config = _config(
        {"auto": {"candidates": ["large", "medium", "small"], "policy": "cheapest", "quality_floor": 0.6}}
    )
    policy = _policy(config)
    decision = policy.decide("auto", "t", _features(prompt_tokens=1000, max_output=100))
    # small is cheapest but its prior 0.5 misses the floor: medium, then large, then small.
    assert _order(decision) == ["medium", "large", "small"] and decision.propensity == 1.0
    assert decision.candidates[0].score == pytest.approx(-(1000 * 1.0 + 100 * 4.0) / 1e6)
    high = _config({"auto": {"candidates": ["small", "medium"], "policy": "cheapest", "quality_floor": 0.95}})
    assert _order(_policy(high).decide("auto", "t", _features())) == ["medium", "small"]
    # Learned quality replaces the prior once an arm has pulls.
    arms = {"auto": _route_arms([_arm("small", pulls=50, alpha=45, beta=5)])}
    assert _order(_policy(config, arms=arms).decide("auto", "t", _features()))[0] == "small"


def _arm(model: str, **fields: Any) -> router_pb2.ArmState:
    return router_pb2.ArmState(model=model, **fields)


def _route_arms(arms, tenant_arms=()):
    from atp_common.policy import RouteArms

    return RouteArms(list(arms), list(tenant_arms))


def test_ucb_tries_untried_arms_then_ranks_by_upper_bound() -> None:
    config = _config(
        {"auto": {"candidates": ["small", "medium", "large"], "policy": "ucb", "exploration": 1.0}}
    )
    arms = {"auto": _route_arms([_arm("small", pulls=10, reward_sum=9.0)])}
    decision = _policy(config, arms=arms).decide("auto", "t", _features())
    # Untried arms first, by prior (large 0.9 > medium 0.7), then the tried one.
    assert _order(decision) == ["large", "medium", "small"] and decision.propensity == 1.0
    arms = {
        "auto": _route_arms(
            [
                _arm("small", pulls=100, reward_sum=60.0),
                _arm("medium", pulls=100, reward_sum=70.0),
                _arm("large", pulls=2, reward_sum=1.0),
            ]
        )
    }
    decision = _policy(config, arms=arms).decide("auto", "t", _features())
    # large's mean is only 0.5 but two pulls give it the widest bound.
    assert _order(decision) == ["large", "medium", "small"]
    scores = [c.score for c in decision.candidates]
    assert scores == sorted(scores, reverse=True)


def test_tenant_arms_override_global_arms() -> None:
    config = _config(
        {"auto": {"candidates": ["small", "medium"], "policy": "ucb", "exploration": 0.0, "per_tenant": True}}
    )
    global_arms = [_arm("small", pulls=100, reward_sum=80.0), _arm("medium", pulls=100, reward_sum=50.0)]
    tenant = router_pb2.TenantArms(tenant="acme", arms=[_arm("medium", pulls=100, reward_sum=95.0)])
    policy = _policy(config, arms={"auto": _route_arms(global_arms, [tenant])})
    assert _order(policy.decide("auto", "acme", _features())) == ["medium", "small"]
    assert _order(policy.decide("auto", "other", _features())) == ["small", "medium"]


def test_linucb_scores_the_context() -> None:
    config = _config({"auto": {"candidates": ["small", "medium"], "policy": "linucb", "exploration": 0.1}})
    dim = FEATURE_DIM
    identity = [1.0 if i == j else 0.0 for i in range(dim) for j in range(dim)]
    # small pays off on code (feature 2), medium on questions (feature 3).
    b_small = [0.0] * dim
    b_small[2] = 1.0
    b_medium = [0.0] * dim
    b_medium[3] = 1.0
    arms = {
        "auto": _route_arms(
            [
                _arm("small", pulls=5, a_inv=identity, b=b_small),
                _arm("medium", pulls=5, a_inv=identity, b=b_medium),
            ]
        )
    }
    policy = _policy(config, arms=arms)
    code = _features()
    code.vector[2] = 1.0
    question = _features()
    question.vector[3] = 1.0
    assert _order(policy.decide("auto", "t", code))[0] == "small"
    assert _order(policy.decide("auto", "t", question))[0] == "medium"
    assert policy.decide("auto", "t", code).propensity == 1.0


def test_linucb_without_state_uses_priors() -> None:
    config = _config({"auto": {"candidates": ["small", "large"], "policy": "linucb", "exploration": 0.5}})
    real = compute_features(
        [chat_pb2.ChatMessage(role="user", content="hi?")], chat_pb2.GenerationParams(), False
    )
    assert _order(_policy(config).decide("auto", "t", real)) == ["large", "small"]


@pytest.mark.parametrize(
    "states",
    [
        [(3, 2), (2, 3)],
        [(1, 1), (2, 1)],
        [(30, 20), (25, 20), (10, 10)],
        [(2, 2), (900, 100), (5, 1)],
        [(12, 8), (11, 9), (10, 10), (9, 11)],
    ],
)
def test_thompson_propensity_estimate_matches_empirical_frequency(states: list[tuple[float, float]]) -> None:
    names = ["small", "medium", "large", "extra"][: len(states)]
    models = {**MODELS, "extra": MODELS["medium"]}
    config = AtpConfig.model_validate(
        {
            "providers": {"p1": {"type": "local"}, "p2": {"type": "local"}},
            "models": models,
            "routes": {"auto": {"candidates": names, "policy": "thompson"}},
        }
    )
    arms = {
        "auto": _route_arms(
            [_arm(n, pulls=a + b, alpha=a, beta=b) for n, (a, b) in zip(names, states, strict=True)]
        )
    }
    policy = _policy(config, arms=arms)
    rng = random.Random(5)
    n = 12_000
    counts: Counter[str] = Counter()
    estimates: dict[str, float] = {}
    features = _features()
    for _ in range(n):
        decision = policy.decide("auto", "t", features, rng)
        first = decision.candidates[0].model
        counts[first] += 1
        estimates[first] = decision.propensity
        scores = [c.score for c in decision.candidates]
        assert scores == sorted(scores, reverse=True)
    for model, estimate in estimates.items():
        assert abs(counts[model] / n - estimate) < 0.02, (model, counts[model] / n, estimate)


def test_thompson_subtracts_cost() -> None:
    config = _config(
        {"auto": {"candidates": ["small", "large"], "policy": "thompson", "cost_weight": 1000.0}}
    )
    arms = {
        "auto": _route_arms(
            [
                _arm("small", pulls=200, alpha=120, beta=80, mean_cost_usd=0.0001),
                _arm("large", pulls=200, alpha=180, beta=20, mean_cost_usd=0.01),
            ]
        )
    }
    policy = _policy(config, arms=arms)
    rng = random.Random(3)
    firsts = Counter(policy.decide("auto", "t", _features(), rng).candidates[0].model for _ in range(500))
    # large is better (0.9 against 0.6) but costs 10 reward units a call at this cost weight.
    assert firsts["small"] == 500


def _mixed_config() -> AtpConfig:
    """An OpenAI model, an Anthropic model and an embedding model behind one route each."""
    return AtpConfig.model_validate(
        {
            "providers": {
                "oa": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"},
                "an": {"type": "anthropic", "base_url": "http://127.0.0.1:1"},
            },
            "models": {
                "gpt": {"provider": "oa", "capabilities": ["streaming", "tools", "json", "reasoning"]},
                "claude": {"provider": "an", "capabilities": ["streaming", "tools", "json", "reasoning"]},
                "embed": {"provider": "oa", "capabilities": ["embeddings"]},
            },
            "routes": {"auto": {"candidates": ["claude", "gpt"]}, "all": {"candidates": ["claude", "embed"]}},
        }
    )


def _request(**params: Any) -> chat_pb2.RequestFeatures:
    messages = [chat_pb2.ChatMessage(role="user", content="hi")]
    return compute_features(messages, chat_pb2.GenerationParams(**params), False)


def test_candidates_that_cannot_honour_a_parameter_are_filtered_with_the_feature_named() -> None:
    policy = _policy(_mixed_config())
    decision = policy.decide("auto", "t", _request(logprobs=True, top_logprobs=2))
    assert _order(decision) == ["gpt"]
    assert [(f.model, f.reason) for f in decision.filtered] == [("claude", "lacks logprobs")]
    decision = policy.decide("auto", "t", _request(n=2, seed=3))
    assert decision.filtered[0].reason == "lacks multiple_choices, seed"
    # Parameters every provider honours filter nothing.
    assert _order(policy.decide("auto", "t", _request(max_tokens=5, temperature=0.2))) == ["claude", "gpt"]


def test_no_candidate_honouring_the_request_is_invalid_argument_naming_the_parameter() -> None:
    policy = _policy(_mixed_config())
    with pytest.raises(InvalidArgument) as caught:
        policy.decide("claude", "t", _request(logit_bias={"1": 5}))
    assert caught.value.param == "logit_bias" and "claude: lacks logit_bias" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        policy.decide("auto", "t", _request(top_k=5, logit_bias={"1": 5}))
    assert caught.value.param in ("top_k, logit_bias", "logit_bias, top_k")
    assert "gpt: lacks top_k" in caught.value.message


def test_json_mode_without_a_schema_is_filtered_from_anthropic_but_a_schema_is_not() -> None:
    policy = _policy(_mixed_config())
    plain_json = _request(response_format=chat_pb2.ResponseFormat(type="json_object"))
    decision = policy.decide("auto", "t", plain_json)
    assert _order(decision) == ["gpt"] and decision.filtered[0].reason == "lacks json_object"
    schema = chat_pb2.ResponseFormat(type="json_schema", name="a", schema_json=b'{"type":"object"}')
    assert _order(policy.decide("auto", "t", _request(response_format=schema))) == ["claude", "gpt"]
    with pytest.raises(InvalidArgument) as caught:
        policy.decide("claude", "t", plain_json)
    assert caught.value.param == "response_format"


def test_embedding_models_never_serve_chat() -> None:
    policy = _policy(_mixed_config())
    decision = policy.decide("all", "t", _request())
    assert _order(decision) == ["claude"] and decision.filtered[0].reason == "lacks chat"
    with pytest.raises(InvalidArgument, match="embed: lacks chat") as caught:
        policy.decide("embed", "t", _request())
    assert caught.value.param == "model"


def test_snapshot_fills_supported_features_from_provider_type_and_capabilities() -> None:
    specs = {spec.name: spec for spec in snapshot_from_config(_mixed_config(), 1).models}
    assert "logprobs" in feature_names(specs["gpt"].supported_features)
    assert "logprobs" not in feature_names(specs["claude"].supported_features)
    assert "top_k" in feature_names(specs["claude"].supported_features)
    embed = feature_names(specs["embed"].supported_features)
    assert "embeddings" in embed and "chat" not in embed
    # Capabilities the model does not list stay off even when the provider type could honour them.
    assert "vision" not in feature_names(specs["gpt"].supported_features)
