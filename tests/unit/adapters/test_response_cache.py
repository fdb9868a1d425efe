"""The response cache's rules: what is keyed, what is stored, how a hit replays, and its stores' bounds."""

from __future__ import annotations

import pytest

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters.response_cache import (
    MemoryStore,
    RedisStore,
    ResponseCache,
    canonical_key,
    replay,
)
from atp_common.config import AtpConfig


def _config(**cache: object) -> AtpConfig:
    routes: dict[str, object] = {"plain": {"candidates": ["m"]}}
    routes["cached"] = {"candidates": ["m"], "cache": cache} if cache else {"candidates": ["m"]}
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"m": {"provider": "local"}},
            "routes": routes,
            "default_route": "plain",
        }
    )


def _request(model: str = "cached", text: str = "hi", **params: object) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        request_id="r1",
        tenant="t",
        model=model,
        messages=[chat_pb2.ChatMessage(role="user", content=text)],
        params=chat_pb2.GenerationParams(**params),
    )


def _cache(**cache: object) -> ResponseCache:
    return ResponseCache(
        MemoryStore(100, 1 << 20), _config(**cache), default_ttl_s=60, max_reply_bytes=1 << 16
    )


def test_the_key_holds_what_changes_the_answer_and_nothing_of_the_caller() -> None:
    base = canonical_key(_request(temperature=0), "t")
    other_caller = _request(temperature=0)
    other_caller.request_id, other_caller.key_id, other_caller.stream = "r2", "k9", True
    other_caller.tags["team"] = "x"
    assert canonical_key(other_caller, "t") == base
    assert canonical_key(_request(temperature=0), "other-tenant") != base
    assert canonical_key(_request(text="hello", temperature=0), "t") != base
    assert canonical_key(_request(temperature=0, max_tokens=5), "t") != base
    assert canonical_key(_request(model="plain", temperature=0), "t") != base


def test_only_routes_or_requests_that_ask_use_the_cache() -> None:
    cache = _cache(ttl_s=30)
    assert cache.plan(_request(model="plain"), "t") is None
    plan = cache.plan(_request(temperature=0), "t")
    assert plan is not None and plan.read and plan.store and plan.ttl_s == 30
    asked = _request(model="plain", temperature=0)
    asked.cache = "use"
    plan = cache.plan(asked, "t")
    assert plan is not None and plan.store and plan.ttl_s == 60


@pytest.mark.parametrize(
    ("mode", "temperature", "read", "store"),
    [
        ("", 0.0, True, True),
        ("", 0.7, True, False),
        ("refresh", 0.0, False, True),
        ("no-store", 0.0, True, False),
    ],
)
def test_modes_and_sampled_requests(mode: str, temperature: float, read: bool, store: bool) -> None:
    request = _request(temperature=temperature)
    request.cache = mode
    plan = _cache(ttl_s=30).plan(request, "t")
    assert plan is not None and (plan.read, plan.store) == (read, store)


def test_unset_temperature_is_sampled_unless_the_route_opts_in() -> None:
    assert not _cache(ttl_s=30).plan(_request(), "t").store  # type: ignore[union-attr]
    assert _cache(ttl_s=30, sampled=True).plan(_request(temperature=1.0), "t").store  # type: ignore[union-attr]


def _reply() -> adapters_pb2.GenerateResponse:
    reply = adapters_pb2.GenerateResponse(
        header=adapters_pb2.GenerateHeader(
            decision_id="d-original", model="m", provider="local", request_id="r0"
        ),
        deltas=[chat_pb2.Delta(role="assistant", content="cached answer")],
    )
    reply.completion.cost_usd = 0.25
    reply.completion.usage.completion_tokens = 3
    return reply


@pytest.mark.parametrize("stream", [False, True])
def test_a_hit_replays_the_reply_with_its_decision_at_no_cost(stream: bool) -> None:
    request = _request(temperature=0)
    request.stream = stream
    messages = replay(_reply(), request, "r-now")
    assert len(messages) == (2 if stream else 1)
    assert messages[0].header.decision_id == "d-original" and messages[0].header.cache == "hit"
    assert messages[0].header.request_id == "r-now"
    assert messages[0].deltas[0].content == "cached answer"
    completion = messages[-1].completion
    assert completion.cost_usd == 0 and completion.usage.completion_tokens == 3


async def test_memory_store_is_bounded_and_expires() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=2, max_bytes=10, clock=lambda: now[0])
    await store.put("a", b"12345", 10)
    await store.put("b", b"12345", 10)
    await store.get("a")  # a is now the most recent
    await store.put("c", b"1", 10)
    assert await store.get("b") is None and await store.get("a") == b"12345"
    await store.put("big", b"x" * 11, 10)
    assert await store.get("big") is None
    now[0] = 11.0
    assert await store.get("a") is None


async def test_too_large_replies_are_not_stored() -> None:
    cache = ResponseCache(MemoryStore(10, 1 << 20), _config(ttl_s=30), default_ttl_s=60, max_reply_bytes=16)
    plan = cache.plan(_request(temperature=0), "t")
    assert plan is not None
    await cache.put(plan, _reply())
    assert await cache.get(plan) is None


async def test_a_cache_that_is_down_misses(unused_tcp_port: int) -> None:
    cache = ResponseCache(
        RedisStore(f"redis://127.0.0.1:{unused_tcp_port}/0", "x:", timeout_s=0.1),
        _config(ttl_s=30),
        default_ttl_s=60,
        max_reply_bytes=1 << 16,
    )
    plan = cache.plan(_request(temperature=0), "t")
    assert plan is not None
    try:
        assert await cache.get(plan) is None
        await cache.put(plan, _reply())
    finally:
        await cache.close()
