"""Semantic features, trained artifacts, known-cost scoring and epsilon propensities in the kernel."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import numpy as np
import pytest

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp.router.v1 import router_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, compute_features, snapshot_from_config
from atp_common.policy.artifact import (
    ArtifactError,
    ModelWeights,
    RouterArtifact,
    default_semantic,
    load_artifact,
)
from atp_common.policy.features import FEATURE_DIM
from atp_common.policy.semantic import (
    EMBEDDING_DIM,
    SYSTEM_PREFIX_CHARS,
    USER_PREFIX_CHARS,
    SemanticEncoder,
    embed_texts,
    semantic_text,
)
from atp_router.arm_learning import PolicyLearner

STRONG, WEAK = "strong", "weak"
K = 4


def _messages(text: str, system: str = "") -> list[chat_pb2.ChatMessage]:
    out = [chat_pb2.ChatMessage(role="system", content=system)] if system else []
    return [*out, chat_pb2.ChatMessage(role="user", content=text)]


def _artifact(strong_quality: float = 0.9, weak_quality: float = 0.5) -> RouterArtifact:
    rng = np.random.default_rng(3)
    dim = FEATURE_DIM + K
    gram = np.eye(dim).ravel().tolist()

    def weights(quality: float) -> ModelWeights:
        theta = [0.0] * dim
        theta[0] = quality
        return ModelWeights(tuple(theta), tuple(gram), 100.0)

    matrix = rng.standard_normal((K, EMBEDDING_DIM)).astype(np.float32)
    return RouterArtifact(
        tuple(matrix.ravel().tolist()),
        tuple(float(v) for v in rng.standard_normal(K)),
        {STRONG: weights(strong_quality), WEAK: weights(weak_quality)},
        {"digest": "sha256:test", "rows": 100},
    )


def _config(artifact: Path | None, **route: object) -> AtpConfig:
    models = {
        STRONG: {"provider": "p", "input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0},
        WEAK: {"provider": "p", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 0.5},
    }
    fields: dict[str, object] = {
        "candidates": [STRONG, WEAK],
        "policy": "linucb",
        "exploration": 0.0,
        **route,
    }
    if artifact is not None:
        fields["artifact"] = str(artifact)
    return AtpConfig.model_validate(
        {
            "providers": {"p": {"type": "local"}},
            "models": models,
            "routes": {"r": fields},
            "default_route": "r",
        }
    )


def test_the_embedding_loads_from_the_installed_package_with_no_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedding tried to reach the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    vectors = embed_texts(["What is the integral of x squared?", "Write a haiku about autumn leaves."])
    assert vectors.shape == (2, EMBEDDING_DIM)
    assert np.all(np.isfinite(vectors)) and not np.allclose(vectors[0], vectors[1])


def test_features_are_deterministic_and_zero_for_text_without_words() -> None:
    encoder = SemanticEncoder(np.eye(K, EMBEDDING_DIM, dtype=np.float32), np.zeros(K, dtype=np.float32))
    first = encoder.encode(_messages("Prove that the square root of two is irrational."))
    assert first == encoder.encode(_messages("Prove that the square root of two is irrational."))
    assert len(first) == K and any(v != 0.0 for v in first)
    assert encoder.encode(_messages("   ")) == [0.0] * K
    # The projection is linear: it equals P applied to the mean embedding.
    mean = embed_texts(["Prove that the square root of two is irrational."])[0]
    assert first == pytest.approx(mean[:K].tolist(), abs=1e-5)


def test_the_text_is_the_system_prompt_and_last_user_turn_bounded() -> None:
    messages = [
        chat_pb2.ChatMessage(role="system", content="s" * 1000),
        chat_pb2.ChatMessage(role="user", content="first question"),
        chat_pb2.ChatMessage(role="assistant", content="an answer"),
        chat_pb2.ChatMessage(role="user", content="u" * 5000),
    ]
    text = semantic_text(messages)
    assert text == "s" * SYSTEM_PREFIX_CHARS + "\n" + "u" * USER_PREFIX_CHARS
    parts = chat_pb2.ChatMessage(role="user", parts=[chat_pb2.ContentPart(text="from parts")])
    assert semantic_text([parts]) == "from parts"


def test_artifact_round_trip_and_refusals(tmp_path: Path) -> None:
    artifact = _artifact()
    path = artifact.save(tmp_path / "a.json")
    loaded = load_artifact(path)
    assert loaded.semantic_dim == K and loaded.dim == FEATURE_DIM + K
    assert set(loaded.models) == {STRONG, WEAK}
    assert loaded.models[STRONG].theta == pytest.approx(artifact.models[STRONG].theta, rel=1e-6)
    assert loaded.projection == pytest.approx(artifact.projection, rel=1e-6)
    assert loaded.training["digest"] == "sha256:test"
    assert load_artifact(loaded.save(tmp_path / "b.json")).digest() == loaded.digest()

    data = artifact.to_json()
    data["features"]["base"] = ["bias", "something_else"]  # type: ignore[index]
    bad = tmp_path / "bad.json"
    bad.write_bytes(__import__("orjson").dumps(data))
    with pytest.raises(ArtifactError, match="base features"):
        load_artifact(bad)
    with pytest.raises(ArtifactError, match="No such file"):
        load_artifact(tmp_path / "missing.json")
    assert default_semantic().semantic_dim > 0 and not default_semantic().models


def test_snapshot_ships_the_projection_and_the_kernel_scores_the_artifact(tmp_path: Path) -> None:
    path = _artifact().save(tmp_path / "a.json")
    snapshot = snapshot_from_config(_config(path, cost_weight=0.0), 1)
    route = snapshot.routes[0]
    assert route.feature_dim == FEATURE_DIM + K and route.known_cost and len(route.semantic.offset) == K
    assert route.artifact_digest and {arm.model for arm in route.arms} == {STRONG, WEAK}
    # The training record travels for operators (the console's Routing page), as JSON.
    assert __import__("orjson").loads(route.artifact_training) == {"digest": "sha256:test", "rows": 100}
    from atp_gateway.console.api import _artifact as console_artifact

    shown = console_artifact(route)
    assert shown == {
        "digest": route.artifact_digest,
        "semantic_dims": K,
        "training": {"digest": "sha256:test", "rows": 100},
    }
    assert console_artifact(router_pb2.RoutePolicy(name="plain")) is None

    messages = _messages("Explain the causes of the French revolution.")
    params = chat_pb2.GenerationParams(max_tokens=100)

    def choose(config: AtpConfig) -> chat_pb2.Decision:
        policy = CompiledPolicy.from_snapshot(snapshot_from_config(config, 1))
        features = compute_features(messages, params, False)
        encoder = policy.semantic_encoder("r")
        assert encoder is not None
        features.vector.extend(encoder.encode(messages))
        return policy.decide("r", "t", features, random.Random(0))

    assert choose(_config(path, cost_weight=0.0)).candidates[0].model == STRONG
    # Strong costs ~$0.0031 more here; a weight of 1000 prices that at 3.1 quality points: too dear.
    assert choose(_config(path, cost_weight=1000.0)).candidates[0].model == WEAK
    # Weak's 0.5 is within half of strong's 0.9: the cheapest candidate above the floor wins.
    floored = choose(_config(path, cost_weight=0.0, quality_floor=0.5))
    assert floored.candidates[0].model == WEAK and "cheapest" in floored.explanation
    assert choose(_config(path, cost_weight=0.0, quality_floor=0.6)).candidates[0].model == STRONG


def test_routes_without_semantic_features_pay_nothing() -> None:
    policy = CompiledPolicy.from_snapshot(snapshot_from_config(_config(None), 1))
    assert policy.semantic_encoder("r") is None
    assert snapshot_from_config(_config(None), 1).routes[0].feature_dim == FEATURE_DIM


def test_learning_starts_from_the_artifact_and_keeps_learning(tmp_path: Path) -> None:
    path = _artifact().save(tmp_path / "a.json")
    config = _config(path, cost_weight=0.0, prior_rows=10.0)
    learner = PolicyLearner(config)
    route = learner.routes["r"]
    assert route.learns_quality and route.dim == FEATURE_DIM + K
    before = route._arms[STRONG].theta(0, 1.0)
    assert before[0] == pytest.approx(0.9, abs=1e-6)
    x = [1.0] + [0.0] * (FEATURE_DIM + K - 1)
    for i in range(20):
        learner.apply(
            observer_pb2.RewardEvent(
                decision_id=str(i),
                route="r",
                model=STRONG,
                policy="linucb",
                reward=-5.0,
                quality=0.0,
                propensity=1.0,
                features=x,
            )
        )
    after = route._arms[STRONG].theta(route.step, 1.0)
    # It learned quality (0), not the reward (-5): the prediction moved toward 0 and stays in range.
    assert 0.0 < after[0] < before[0]


def test_epsilon_mixing_logs_true_propensities() -> None:
    config = _config(None, policy="ucb", epsilon=0.2)
    policy = CompiledPolicy.from_snapshot(snapshot_from_config(config, 1))
    features = compute_features(_messages("hello"), chat_pb2.GenerationParams(), False)
    rng = random.Random(5)
    counts: dict[str, int] = {}
    logged: dict[str, float] = {}
    n = 4000
    for _ in range(n):
        decision = policy.decide("r", "t", features, rng)
        chosen = decision.candidates[0].model
        counts[chosen] = counts.get(chosen, 0) + 1
        logged[chosen] = decision.propensity
    assert set(counts) == {STRONG, WEAK}
    for model, count in counts.items():
        assert count / n == pytest.approx(logged[model], abs=0.03)
    assert sorted(logged.values()) == pytest.approx([0.1, 0.9])
