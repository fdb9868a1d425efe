"""Choosing among a model's deployments: weights, load, latency, 429s, regions, features and quotas."""

from __future__ import annotations

import random
from collections import Counter

from atp_adapters.deployments import Deployment, DeploymentSet, LocalBreaker
from atp_adapters.limits.backends import MemoryBackend
from atp_adapters.providers import LocalProvider, ProviderError
from atp_adapters.resilience import CircuitBreaker, RetryPolicy
from atp_common.config import LocalProvider as LocalConfig
from atp_common.regions import RegionFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(name: str, region: str = "eu-west-1", weight: float = 1.0, **kwargs: object) -> Deployment:
    return Deployment(
        name=name,
        provider_name=name,
        provider=LocalProvider(LocalConfig(), name),
        provider_model=name,
        region=region,
        weight=weight,
        retry=RetryPolicy(max_retries=0),
        breaker=LocalBreaker(CircuitBreaker(3, 30.0)),
        **kwargs,  # type: ignore[arg-type]
    )


def firsts(chooser: DeploymentSet, rounds: int = 2000) -> Counter[str]:
    return Counter(chooser.candidates()[0].name for _ in range(rounds))


def test_weighted_shares_follow_the_weights() -> None:
    chooser = DeploymentSet(
        "m", "weighted", [deployment("a", weight=3), deployment("b", weight=1)], rng=random.Random(7)
    )
    share = firsts(chooser)["a"] / 2000
    assert 0.70 < share < 0.80


def test_least_busy_prefers_the_fewest_requests_in_flight() -> None:
    a, b = deployment("a", in_flight=4), deployment("b", in_flight=1)
    chooser = DeploymentSet("m", "least_busy", [a, b])
    assert [d.name for d in chooser.candidates()] == ["b", "a"]


def test_latency_moves_traffic_off_a_deployment_that_slows_within_twenty_requests() -> None:
    fast, slow = deployment("fast"), deployment("slow")
    chooser = DeploymentSet("m", "latency", [fast, slow], rng=random.Random(3))
    for _ in range(5):
        fast.observe_first_token(50.0)
        slow.observe_first_token(50.0)
    served: list[str] = []
    for _ in range(20):
        chosen = chooser.candidates()[0]
        served.append(chosen.name)
        # "fast" slows from 50 ms to 500 ms; "slow" stays at 50 ms.
        chosen.observe_first_token(500.0 if chosen is fast else 50.0)
    assert served[-10:].count("slow") >= 9


def test_a_429_sets_a_deployment_aside_until_its_retry_after() -> None:
    clock = Clock()
    a, b = deployment("a"), deployment("b")
    chooser = DeploymentSet("m", "least_busy", [a, b], clock=clock)
    a.failed(ProviderError("busy", kind="http", status=429, retry_after=2.0), clock.now)
    assert [d.name for d in chooser.candidates()] == ["b", "a"]  # resting ones last
    clock.now += 2.5
    assert {d.name for d in chooser.candidates()} == {"a", "b"}
    a.in_flight = 0
    b.in_flight = 1
    assert chooser.candidates()[0].name == "a"


def test_regions_and_features_filter_deployments() -> None:
    eu, us = (
        deployment("eu", region="eu-central-1", features=0b11),
        deployment("us", region="us-east-1", features=0b01),
    )
    chooser = DeploymentSet("m", "weighted", [eu, us])
    assert [d.name for d in chooser.candidates(0, RegionFilter(["eu-*"]))] == ["eu"]
    assert [d.name for d in chooser.candidates(0b10)] == ["eu"]
    assert chooser.candidates(0b10, RegionFilter(["eu-*", "us-*"], ["us-*"])) == []


async def test_token_quota_and_models_without_quota() -> None:
    quota = MemoryBackend()
    capped = DeploymentSet("m", "quota_aware", [deployment("a", tpm=100)], quota=quota)
    assert await capped.reserve(capped.deployments[0], 60)
    assert not await capped.reserve(capped.deployments[0], 60)
    free = DeploymentSet("m", "weighted", [deployment("b", rpm=1)], quota=quota)
    assert all([await free.reserve(free.deployments[0], 10) for _ in range(3)])
