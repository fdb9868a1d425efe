"""Deployment quotas on a real Redis: two replicas share one quota exactly."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from atp_adapters.deployments import DeploymentSet
from atp_adapters.limits.backends import RedisBackend
from tests.unit.adapters.test_deployments import deployment


async def test_quotas_hold_exactly_across_two_replicas_on_redis(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    prefix = f"atp-test-{secrets.token_hex(4)}:deployment:"
    replicas = [
        DeploymentSet(
            "m",
            "quota_aware",
            [deployment("a", rpm=60), deployment("b", rpm=60)],
            quota=backend,
            prefix=prefix,
        )
        for _ in range(2)
    ]
    served: Counter[str] = Counter()
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        chooser = replicas[i % 2]
        for candidate in chooser.candidates():
            if await chooser.reserve(candidate, tokens=10):
                served[candidate.name] += 1
                return
        refused += 1

    try:
        await asyncio.gather(*(one(i) for i in range(150)))
    finally:
        await backend.close()
    assert served == {"a": 60, "b": 60}
    assert refused == 30
