"""The response cache on a real Redis: a stored reply comes back for its tenant only."""

from __future__ import annotations

import secrets

from atp_adapters.response_cache import RedisStore, ResponseCache
from tests.unit.adapters.test_response_cache import _config, _reply, _request


async def test_redis_store_round_trip_and_ttl(redis_url: str) -> None:
    store = RedisStore(redis_url, f"atp-test-{secrets.token_hex(4)}:cache:")
    cache = ResponseCache(store, _config(ttl_s=30), default_ttl_s=60, max_reply_bytes=1 << 16)
    plan = cache.plan(_request(temperature=0), "t")
    assert plan is not None
    try:
        assert await cache.get(plan) is None
        await cache.put(plan, _reply())
        hit = await cache.get(plan)
        assert hit is not None and hit.header.decision_id == "d-original"
        other = cache.plan(_request(temperature=0), "another-tenant")
        assert other is not None and await cache.get(other) is None
    finally:
        await cache.close()
