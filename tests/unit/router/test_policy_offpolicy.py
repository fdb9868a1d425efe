"""Off-policy estimators recover a known policy's value from another policy's logs."""

from __future__ import annotations

import random

import pytest

from atp.observer.v1 import observer_pb2
from atp_router.evaluation.offpolicy import (
    LoggedRecord,
    doubly_robust,
    fit_reward_model,
    ips,
    records_from_events,
    snips,
)

ACTIONS = ("a", "b", "c")
# Success probability of each action with and without the context cue.
P = {("a", 0): 0.2, ("a", 1): 0.8, ("b", 0): 0.6, ("b", 1): 0.3, ("c", 0): 0.5, ("c", 1): 0.5}
CUE_RATE = 0.4


def logging_policy(features) -> dict[str, float]:
    # Mostly b, explores the rest: every action keeps a decent propensity.
    return {"a": 0.2, "b": 0.6, "c": 0.2} if features[1] == 0 else {"a": 0.3, "b": 0.4, "c": 0.3}


def target_policy(features) -> dict[str, float]:
    # The policy under evaluation: a on the cue, mostly b otherwise.
    return {"a": 1.0} if features[1] == 1 else {"b": 0.8, "c": 0.2}


def true_value() -> float:
    value = 0.0
    for cue, weight in ((0, 1 - CUE_RATE), (1, CUE_RATE)):
        probabilities = target_policy((1.0, float(cue)))
        value += weight * sum(p * P[(a, cue)] for a, p in probabilities.items())
    return value


def _logs(n: int, seed: int) -> list[LoggedRecord]:
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        cue = 1 if rng.random() < CUE_RATE else 0
        features = (1.0, float(cue))
        probabilities = logging_policy(features)
        action = rng.choices(ACTIONS, weights=[probabilities[a] for a in ACTIONS])[0]
        reward = 1.0 if rng.random() < P[(action, cue)] else 0.0
        records.append(LoggedRecord(features, action, probabilities[action], reward))
    return records


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimators_recover_the_target_policys_value(seed: int) -> None:
    records = _logs(20_000, seed)
    truth = true_value()
    naive = sum(r.reward for r in records) / len(records)
    assert abs(naive - truth) > 0.1  # the logging policy's own value is far from the target's
    by_ips = ips(records, target_policy)
    by_snips = snips(records, target_policy)
    by_dr = doubly_robust(records, target_policy, fit_reward_model(records))
    for estimate in (by_ips, by_snips, by_dr):
        assert estimate.n == len(records)
        assert abs(estimate.value - truth) < max(4 * estimate.std_error, 0.01), (estimate, truth)
        assert abs(estimate.value - truth) < 0.03
    # A good reward model removes most of the variance.
    assert by_dr.std_error < by_ips.std_error
    assert 0 < by_ips.effective_sample_size < len(records)


def test_a_wrong_reward_model_is_corrected_by_the_propensities() -> None:
    records = _logs(20_000, 4)
    estimate = doubly_robust(records, target_policy, lambda features, action: 0.0)
    assert abs(estimate.value - true_value()) < 0.03


def test_weight_clipping_bounds_the_weights() -> None:
    records = [LoggedRecord((1.0,), "a", 0.0001, 1.0), LoggedRecord((1.0,), "b", 0.5, 0.0)]
    clipped = ips(records, lambda features: {"a": 1.0}, max_weight=10.0)
    assert clipped.value == pytest.approx(5.0)
    floored = ips(records, lambda features: {"a": 1.0}, min_propensity=0.01)
    assert floored.value == pytest.approx(50.0)


def test_records_from_events_apply_corrections_and_skip_direct_calls() -> None:
    events = [
        observer_pb2.RewardEvent(decision_id="d1", model="a", policy="thompson", propensity=0.5, reward=0.1),
        observer_pb2.RewardEvent(decision_id="d2", model="b", policy="direct", propensity=1.0, reward=0.5),
        observer_pb2.RewardEvent(
            decision_id="d1", model="a", policy="thompson", propensity=0.5, reward=0.9, correction=True
        ),
        observer_pb2.RewardEvent(
            decision_id="d3", model="c", policy="ucb", propensity=1.0, reward=0.4, features=[1]
        ),
    ]
    records = records_from_events(events)
    assert [(r.action, r.propensity, r.reward) for r in records] == [("a", 0.5, 0.9), ("c", 1.0, 0.4)]
    assert records[1].features == (1.0,)


def test_no_records_is_an_error() -> None:
    with pytest.raises(ValueError):
        ips([], target_policy)
