"""Deployment quotas on a real Redis: two replicas share one quota exactly."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from atp_adapters.deployments import DeploymentSet
from atp_adapters.limits.backends import RedisBackend
from tests.support.ports import free_port
from tests.unit.adapters.test_deployments import deployment


async def test_quotas_hold_exactly_across_two_replicas_on_redis(redis_url: str) -> None:
    # Exactness is the subject: a generous timeout keeps a loaded machine from switching to the
    # per-replica fallback (a store call past the default 0.25 s), which another test covers.
    backend = RedisBackend(redis_url, timeout_s=5.0)
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


async def test_an_unreachable_store_leaves_each_replica_its_own_count() -> None:
    # Nothing listens there: no shared counter can be read, so a replica keeps to its own rpm count.
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    chooser = DeploymentSet("m", "quota_aware", [deployment("a", rpm=2)], quota=backend, prefix="atp-test:")
    try:
        admitted = [await chooser.reserve(chooser.deployments[0], tokens=10) for _ in range(3)]
    finally:
        await backend.close()
    assert admitted == [True, True, False]
