"""The semantic cache's parts: salient words, the bounded per-tenant index, and how a request is split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.response_cache import SEMANTIC_HIT, MemoryStore, ResponseCache
from atp_adapters.semantic_cache import (
    MAX_CHARS,
    SemanticIndex,
    SemanticQuery,
    make_query,
    salient,
)
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.policy.semantic import EMBEDDING_DIM
from tests.fakes.observer import start_recording_observer
from tests.support.adapters_suite import generate, request, text_of
from tests.support.ports import free_port

_COLD = chat_pb2.GenerationParams(temperature=0)


def test_salient_words_are_numbers_names_in_order_and_negation() -> None:
    assert salient("What is 15% of 1,000?") == ("15", "1000")
    assert salient("Convert Celsius to Fahrenheit.") == ("celsius", "fahrenheit")
    assert salient("Convert Fahrenheit to Celsius.") == ("fahrenheit", "celsius")
    # A sentence's first word is capitalised anyway; an acronym there still counts.
    assert salient("Tell me about Rome. Where is it?") == ("rome",)
    assert salient("NASA launched what?") == ("nasa",)
    assert salient("Why don't dogs like cats?") == ("\u00ac",)
    assert salient("Give me three ideas.") == ("three",)
    assert salient("Which fruits are safe for dogs?") == ()


def _query(
    bucket: int = 1, seed: int = 0, words: tuple[str, ...] = (), threshold: float = 0.9
) -> SemanticQuery:
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM).astype(np.float32)
    return SemanticQuery(bucket, vector / np.linalg.norm(vector), words, threshold)


def test_the_index_finds_the_same_question_in_its_bucket_and_tenant_only() -> None:
    index = SemanticIndex(entries=8, tenants=4)
    index.add("t", "k1", _query(seed=1))
    assert index.nearest("t", _query(seed=1)) == "k1"
    assert index.nearest("t", _query(seed=2)) is None  # unrelated vector: far below the threshold
    assert index.nearest("t", _query(bucket=3, seed=1)) is None
    assert index.nearest("t", _query(seed=1, words=("7",))) is None
    assert index.nearest("other", _query(seed=1)) is None
    index.remove("t", "k1")
    assert index.nearest("t", _query(seed=1)) is None


def test_the_index_is_bounded_per_tenant_and_in_tenants_lru() -> None:
    index = SemanticIndex(entries=100, tenants=2)
    for i in range(250):  # grows past its first matrix, then evicts the least recently used
        index.add("t", f"k{i}", _query(seed=i))
        if i == 120:
            assert index.nearest("t", _query(seed=30)) == "k30"  # used: kept while 31.. go
    assert index.size("t") == 100
    assert index.nearest("t", _query(seed=30)) is None  # 129 more were added since its use
    assert index.nearest("t", _query(seed=249)) == "k249"
    assert index.nearest("t", _query(seed=149)) is None
    index.add("u", "x", _query(seed=1))
    index.add("v", "y", _query(seed=1))  # a third tenant: the least recently used ("t") goes
    assert index.size("t") == 0 and index.nearest("u", _query(seed=1)) == "x"


def _cache() -> ResponseCache:
    config = AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"m": {"provider": "local"}},
            "routes": {"r": {"candidates": ["m"], "cache": {"ttl_s": 30, "semantic": {"threshold": 0.95}}}},
            "default_route": "r",
        }
    )
    return ResponseCache(MemoryStore(100, 1 << 20), config, default_ttl_s=60, max_reply_bytes=1 << 16)


def _request(*turns: tuple[str, str]) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        tenant="t",
        model="r",
        messages=[chat_pb2.ChatMessage(role=role, content=text) for role, text in turns],
        params=chat_pb2.GenerationParams(temperature=0),
    )


def test_a_request_splits_into_the_question_and_an_exact_bucket() -> None:
    cache = _cache()
    one = cache.plan(_request(("system", "Be brief."), ("user", "What is the capital of France?")), "t")
    two = cache.plan(_request(("system", "Be brief."), ("user", "Tell me the capital of France.")), "t")
    other_system = cache.plan(
        _request(("system", "Be long."), ("user", "Tell me the capital of France.")), "t"
    )
    assert one is not None and two is not None and other_system is not None
    assert (
        one.question == "What is the capital of France?" and one.bucket == two.bucket != other_system.bucket
    )
    assert one.key != two.key
    # No semantic matching: the last turn is not the user's, or is too long to embed whole.
    for unsplit in (
        _request(("user", "hi"), ("assistant", "hello")),
        _request(("user", "word " * (MAX_CHARS // 5 + 1))),
    ):
        plan = cache.plan(unsplit, "t")
        assert plan is not None and plan.question == ""


async def test_a_paraphrase_is_served_until_the_store_forgets_the_reply() -> None:
    cache = _cache()
    stored = cache.plan(_request(("user", "What is the capital of France?")), "t")
    asked = cache.plan(_request(("user", "Tell me the capital of France.")), "t")
    assert stored is not None and asked is not None
    reply = adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(content="Paris.")])
    reply.header.decision_id = "d1"
    await cache.put(stored, reply)
    hit = await cache.get(asked)
    assert hit is not None and hit.header.decision_id == "d1" and asked.outcome == SEMANTIC_HIT
    await cache._store.close()  # the store loses every reply (expiry, eviction, a Redis flush)
    again = cache.plan(_request(("user", "Tell me the capital of France.")), "t")
    assert again is not None and await cache.get(again) is None
    assert cache._index.size("t") == 0


def test_make_query_needs_words() -> None:
    assert make_query("  \n ", 1, 0.9) is None


async def test_a_semantic_hit_is_observed_as_a_hit_of_the_original_decision(tmp_path: Path) -> None:
    observer, observer_server = await start_recording_observer()
    config = AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"echo": {"provider": "local", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}},
            "routes": {
                "r": {"candidates": ["echo"], "cache": {"ttl_s": 30, "semantic": {"threshold": 0.95}}}
            },
            "default_route": "r",
            "tenants": {"acme": {}},
        }
    )
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        ship_interval_s=0.02,
        drain_delay_s=0.05,
        grace_s=2.0,
    )
    adapters = await build_server(settings, config=config)
    channel = aio.insecure_channel(adapters.address)
    try:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        first = await generate(
            stub,
            request("r", stream=False, text="What is the capital of France?", request_id="q1", params=_COLD),
        )
        second = await generate(
            stub,
            request("r", stream=True, text="Tell me the capital of France.", request_id="q2", params=_COLD),
        )
        stored, hit = await observer.wait_for("q1"), await observer.wait_for("q2")
    finally:
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
    assert first[0].header.cache == "miss" and second[0].header.cache == SEMANTIC_HIT
    # The stored reply says until when it is held (a gateway may copy it); a paraphrase's reply does not.
    assert first[0].header.cache_expires_at_ms > 0 and second[0].header.cache_expires_at_ms == 0
    assert text_of(second) == text_of(first)
    assert hit.cache_hit and hit.cached_decision_id == stored.decision.decision_id
    assert hit.cost_usd == 0 and hit.saved_cost_usd == stored.cost_usd > 0
