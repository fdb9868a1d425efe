"""The learner: reward and correction math, Sherman-Morrison, decay, tenant priors, determinism."""

from __future__ import annotations

import random

import pytest

from atp.observer.v1 import observer_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, snapshot_from_config
from atp_common.policy._math import beta_prior, invert
from atp_common.policy.features import FEATURE_DIM
from atp_router.arm_learning import TENANT_PRIOR_PULLS, ArmLearner, PolicyLearner, RouteLearner


def _config(policy: str = "linucb", per_tenant: bool = True) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"p": {"type": "local"}},
            "models": {
                "a": {"provider": "p", "quality_prior": 0.6},
                "b": {"provider": "p", "quality_prior": 0.4},
            },
            "routes": {"auto": {"candidates": ["a", "b"], "policy": policy, "per_tenant": per_tenant}},
        }
    )


def _vector(rng: random.Random) -> list[float]:
    return [1.0] + [float(rng.random() < 0.5) for _ in range(FEATURE_DIM - 1)]


def _events(seed: int, n: int, corrections: bool = True) -> list[observer_pb2.RewardEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        quality = rng.random()
        event = observer_pb2.RewardEvent(
            decision_id=f"d{i}",
            tenant=rng.choice(["t1", "t2", ""]),
            route="auto",
            model=rng.choice(["a", "b"]),
            policy="linucb",
            reward=quality - 0.1,
            quality=quality,
            cost_usd=rng.random() / 100,
            latency_ms=rng.random() * 1000,
            features=_vector(rng),
        )
        events.append(event)
        if corrections and rng.random() < 0.2:
            fixed = observer_pb2.RewardEvent()
            fixed.CopyFrom(event)
            fixed.correction = True
            fixed.previous_reward, fixed.previous_quality = event.reward, event.quality
            fixed.quality = rng.random()
            fixed.reward = fixed.quality - 0.1
            events.append(fixed)
    return events


def _blob(learner: PolicyLearner) -> bytes:
    return b"".join(
        state.SerializeToString(deterministic=True)
        for route in learner.export().values()
        for state in [*route.arms, *route.tenant_arms]
    )


@pytest.mark.parametrize("decay", [1.0, 0.97])
def test_replicas_fed_the_same_events_export_identical_bytes(decay: float) -> None:
    config = _config()
    first, second = PolicyLearner(config, decay=decay), PolicyLearner(config, decay=decay)
    events = _events(1, 400)
    for i, event in enumerate(events):
        first.apply(event)
        if i % 37 == 0:
            # Exporting is read-only: a replica that publishes snapshots often must not drift.
            first.export()
    assert second.apply_all(events) == len(events)
    assert _blob(first) == _blob(second)
    third = PolicyLearner(config, decay=decay)
    third.apply_all(_events(2, 400))
    assert _blob(third) != _blob(first)


def _matmul(a: list[float], b: list[float], dim: int) -> list[float]:
    return [sum(a[i * dim + k] * b[k * dim + j] for k in range(dim)) for i in range(dim) for j in range(dim)]


def test_sherman_morrison_keeps_a_inv_the_inverse_of_a() -> None:
    route = RouteLearner("auto", {"a": 0.5})
    rng = random.Random(3)
    dim = FEATURE_DIM
    a = [1.0 if i == j else 0.0 for i in range(dim) for j in range(dim)]
    for _ in range(300):
        x = _vector(rng)
        route.apply(
            observer_pb2.RewardEvent(route="auto", model="a", reward=rng.random(), quality=0.5, features=x)
        )
        for r in range(dim):
            for c in range(dim):
                a[r * dim + c] += x[r] * x[c]
    state = route.export().arms[0]
    product = _matmul(list(state.a_inv), a, dim)
    identity = [1.0 if i == j else 0.0 for i in range(dim) for j in range(dim)]
    assert product == pytest.approx(identity, abs=1e-9)
    assert state.pulls == 300


def test_decay_keeps_a_inv_a_true_bounded_inverse() -> None:
    route = RouteLearner("auto", {"a": 0.5, "b": 0.5}, decay=0.95)
    rng = random.Random(4)
    for _ in range(2000):
        route.apply(
            observer_pb2.RewardEvent(
                route="auto", model=rng.choice("ab"), reward=rng.random(), quality=0.5, features=_vector(rng)
            )
        )
    arm = route._arms["a"]
    dim = FEATURE_DIM
    identity = [1.0 if i == j else 0.0 for i in range(dim) for j in range(dim)]
    assert _matmul(arm.a_inv, arm.a, dim) == pytest.approx(identity, abs=1e-7)
    # The ridge never decays below half: a_inv's diagonal stays below 2 / RIDGE.
    assert max(arm.a_inv[i * dim + i] for i in range(dim)) <= 2.0
    # A discounted sum: pulls cannot exceed 1 / (1 - gamma).
    assert 0 < route.export().arms[0].pulls < 20.0


def test_a_correction_replaces_the_reward_instead_of_adding() -> None:
    corrected, direct = RouteLearner("auto", {"a": 0.5}), RouteLearner("auto", {"a": 0.5})
    x = [1.0, 0.5, 1.0] + [0.0] * (FEATURE_DIM - 3)
    corrected.apply(observer_pb2.RewardEvent(route="auto", model="a", reward=0.2, quality=0.3, features=x))
    corrected.apply(
        observer_pb2.RewardEvent(
            route="auto",
            model="a",
            reward=0.9,
            quality=1.0,
            features=x,
            correction=True,
            previous_reward=0.2,
            previous_quality=0.3,
        )
    )
    direct.apply(observer_pb2.RewardEvent(route="auto", model="a", reward=0.9, quality=1.0, features=x))
    got, want = corrected.export().arms[0], direct.export().arms[0]
    assert got.pulls == want.pulls == 1
    assert got.reward_sum == pytest.approx(want.reward_sum)
    assert got.reward_sq_sum == pytest.approx(want.reward_sq_sum)
    assert (got.alpha, got.beta) == pytest.approx((want.alpha, want.beta))
    assert list(got.b) == pytest.approx(list(want.b))
    assert list(got.a_inv) == list(want.a_inv)


def test_beta_update_with_fractional_quality() -> None:
    route = RouteLearner("auto", {"a": 0.6})
    for quality in (1.0, 0.25, 0.5):
        route.apply(observer_pb2.RewardEvent(route="auto", model="a", reward=quality, quality=quality))
    state = route.export().arms[0]
    alpha0, beta0 = beta_prior(0.6)
    assert (state.alpha, state.beta) == pytest.approx((alpha0 + 1.75, beta0 + 1.25))
    # An event without features leaves the regression at its prior.
    assert list(state.b) == pytest.approx([0.6] + [0.0] * (FEATURE_DIM - 1))


def test_means_of_cost_and_latency() -> None:
    route = RouteLearner("auto", {"a": 0.5})
    for cost, latency in ((0.01, 100.0), (0.03, 300.0)):
        route.apply(
            observer_pb2.RewardEvent(route="auto", model="a", quality=1, cost_usd=cost, latency_ms=latency)
        )
    state = route.export().arms[0]
    assert state.mean_cost_usd == pytest.approx(0.02) and state.mean_latency_ms == pytest.approx(200.0)


def test_decay_notices_a_degraded_arm() -> None:
    steady, decayed = RouteLearner("auto", {"a": 0.5}), RouteLearner("auto", {"a": 0.5}, decay=0.98)
    for reward in [1.0] * 1000 + [0.0] * 100:
        for route in (steady, decayed):
            route.apply(observer_pb2.RewardEvent(route="auto", model="a", reward=reward, quality=reward))
    steady_state, decayed_state = steady.export().arms[0], decayed.export().arms[0]
    assert steady_state.reward_sum / steady_state.pulls > 0.9
    assert decayed_state.reward_sum / decayed_state.pulls < 0.2
    assert decayed_state.alpha / (decayed_state.alpha + decayed_state.beta) < 0.3


def test_tenant_state_starts_from_the_global_prior() -> None:
    route = RouteLearner("auto", {"a": 0.5}, per_tenant=True)
    for i in range(200):
        route.apply(
            observer_pb2.RewardEvent(route="auto", model="a", tenant=f"bulk{i % 5}", reward=0.8, quality=0.8)
        )
    route.apply(observer_pb2.RewardEvent(route="auto", model="a", tenant="new", reward=0.0, quality=0.0))
    for _ in range(500):
        route.apply(
            observer_pb2.RewardEvent(route="auto", model="a", tenant="picky", reward=0.1, quality=0.1)
        )
    exported = {t.tenant: t.arms[0] for t in route.export().tenant_arms}
    new = exported["new"]
    # One own pull plus the global state as TENANT_PRIOR_PULLS pseudo-pulls.
    assert new.pulls == pytest.approx(1 + TENANT_PRIOR_PULLS)
    global_arm = route.export().arms[0]
    assert global_arm.pulls == 701
    global_mean = global_arm.reward_sum / global_arm.pulls
    assert new.reward_sum / new.pulls == pytest.approx(
        TENANT_PRIOR_PULLS * global_mean / (1 + TENANT_PRIOR_PULLS)
    )
    # A tenant with plenty of its own data is dominated by it.
    assert exported["picky"].reward_sum / exported["picky"].pulls < 0.15
    # The tenant's regression is centred on the global coefficients (here without features: the prior).
    assert new.b[0] != 0.0


def test_events_that_are_not_the_routes_to_learn_are_ignored() -> None:
    learner = PolicyLearner(_config())
    assert not learner.apply(observer_pb2.RewardEvent(route="other", model="a", reward=1))
    assert not learner.apply(observer_pb2.RewardEvent(route="auto", model="zzz", reward=1))
    assert not learner.apply(observer_pb2.RewardEvent(route="auto", model="a", policy="direct", reward=1))
    assert learner.export()["auto"].arms[0].pulls == 0


def test_load_stats_seeds_a_cold_router() -> None:
    learner = PolicyLearner(_config())
    used = learner.load_stats(
        [
            observer_pb2.ArmStats(
                route="auto", model="a", pulls=10, reward_sum=7, quality_sum=8, cost_sum=0.1
            ),
            observer_pb2.ArmStats(route="auto", model="b", tenant="t1", pulls=4, reward_sum=1, quality_sum=1),
            observer_pb2.ArmStats(route="nope", model="a", pulls=4),
        ]
    )
    assert used == 2
    exported = learner.export()["auto"]
    a = exported.arms[0]
    alpha0, beta0 = beta_prior(0.6)
    assert (a.pulls, a.reward_sum, a.alpha, a.beta) == pytest.approx((10, 7, alpha0 + 8, beta0 + 2))
    assert a.mean_cost_usd == pytest.approx(0.01)
    assert exported.tenant_arms[0].tenant == "t1"


def test_exported_state_drives_the_kernel() -> None:
    config = _config("ucb", per_tenant=False)
    learner = PolicyLearner(config)
    for _ in range(50):
        learner.apply(observer_pb2.RewardEvent(route="auto", model="a", reward=0.2, quality=0.2))
        learner.apply(observer_pb2.RewardEvent(route="auto", model="b", reward=0.9, quality=0.9))
    snapshot = snapshot_from_config(config, 2, learner.export())
    policy = CompiledPolicy.from_snapshot(snapshot)
    from atp.common.v1 import chat_pb2

    decision = policy.decide("auto", "t", chat_pb2.RequestFeatures(estimated_prompt_tokens=5))
    assert [c.model for c in decision.candidates] == ["b", "a"]
    assert not snapshot.routes[0].tenant_arms


def test_decay_must_be_a_discount() -> None:
    with pytest.raises(ValueError, match="decay"):
        RouteLearner("auto", {"a": 0.5}, decay=1.5)


def test_a_started_arm_in_a_snapshot_is_what_the_learner_exports_before_any_reward() -> None:
    """The adapters build started arms without the router's learner; they must match its export."""
    from atp_common.policy.routesetup import start_arm

    dim = 3
    a = [2.0, 0.1, 0.0, 0.1, 3.0, 0.2, 0.0, 0.2, 4.0]
    start = (a, invert(a, dim), [0.4, -0.2, 0.3], [0.2, -0.05, 0.07])
    learner = ArmLearner("m", 0.5, dim, start=start)
    assert start_arm("m", start) == learner.to_proto(0, 1.0)
