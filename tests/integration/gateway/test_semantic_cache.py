"""The semantic response cache seen from clients: paraphrases served, near-misses and other contexts not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from atp_common.config import AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeOpenAI, FakeReply
from tests.support.stack import adapters_and_gateway

CHAT = "/v1/chat/completions"
KEY, OTHER_KEY = "atp-test-semantic-key", "atp-test-semantic-other"
QUESTION = "What is the capital of France?"
PARAPHRASE = "Tell me the capital of France."


@dataclass
class Stack:
    gateway: GatewayServer
    upstream: FakeOpenAI

    def http(self, key: str = KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.gateway.port}",
            headers={"authorization": f"Bearer {key}"},
            timeout=10.0,
        )

    def answer(self, text: str) -> None:
        """What the provider says from now on: a reply with it came from the provider, not the cache."""
        self.upstream.reply = FakeReply(text=text)


def _config(upstream: FakeOpenAI) -> AtpConfig:
    cache = {"ttl_s": 60, "sampled": True}
    return AtpConfig.model_validate(
        {
            "providers": {"openai": {"type": "openai", "base_url": upstream.base_url, "max_retries": 0}},
            "models": {"gpt": {"provider": "openai", "capabilities": ["streaming", "json", "tools"]}},
            "routes": {
                "semantic": {"candidates": ["gpt"], "cache": {**cache, "semantic": {"threshold": 0.95}}},
                "exact": {"candidates": ["gpt"], "cache": cache},
            },
            "default_route": "semantic",
            "tenants": {
                "a": {"api_keys": [{"hash": hash_api_key(KEY), "name": "a"}]},
                "b": {"api_keys": [{"hash": hash_api_key(OTHER_KEY), "name": "b"}]},
            },
        }
    )


@pytest.fixture
async def stack(observer, tmp_path) -> AsyncIterator[Stack]:
    upstream = FakeOpenAI()
    await upstream.start()
    try:
        async with adapters_and_gateway(_config(upstream), tmp_path, observer_addr=observer[0].address) as gw:
            yield Stack(gw, upstream)
    finally:
        await upstream.stop()


def _body(text: str, model: str = "semantic", system: str = "", **fields: object) -> dict[str, object]:
    messages = [{"role": "system", "content": system}] if system else []
    return {"model": model, "messages": [*messages, {"role": "user", "content": text}], **fields}


def _text(reply: httpx.Response) -> str:
    return str(reply.json()["choices"][0]["message"]["content"])


async def test_a_paraphrase_gets_the_stored_reply_over_http_and_sse(stack: Stack) -> None:
    stack.answer("Paris.")
    async with stack.http() as http:
        first = await http.post(CHAT, json=_body(QUESTION))
        stack.answer("A fresh answer from the provider.")
        again = await http.post(CHAT, json=_body(QUESTION))
        paraphrase = await http.post(CHAT, json=_body(PARAPHRASE))
        streamed = await http.post(
            CHAT, json=_body("Please tell me: what is the capital of France?", stream=True)
        )
    assert first.headers["x-atp-cache"] == "miss" and _text(first) == "Paris."
    assert again.headers["x-atp-cache"] == "hit"
    assert paraphrase.headers["x-atp-cache"] == "semantic-hit" and _text(paraphrase) == "Paris."
    assert paraphrase.headers["x-atp-decision-id"] == first.headers["x-atp-decision-id"]
    assert streamed.headers["x-atp-cache"] == "semantic-hit"
    chunks = [orjson.loads(e[6:]) for e in streamed.content.split(b"\n\n") if e.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Paris."
    assert len(stack.upstream.requests) == 1


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is the capital of France?", "What is the capital of Germany?"),
        # Without the guards on numbers, negations and names in order these three would be served
        # (cosine 0.976, 0.972 and 1.0).
        ("Set a timer for 10 minutes.", "Set a timer for 15 minutes."),
        ("Which fruits are safe for dogs?", "Which fruits are not safe for dogs?"),
        ("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius."),
        ("How do I cook rice in a pot?", "Write a limerick about a cat."),
    ],
)
async def test_near_misses_go_to_the_provider(stack: Stack, stored: str, asked: str) -> None:
    stack.answer("The stored answer.")
    async with stack.http() as http:
        assert (await http.post(CHAT, json=_body(stored))).headers["x-atp-cache"] == "miss"
        stack.answer("The provider's answer.")
        reply = await http.post(CHAT, json=_body(asked))
    assert reply.headers["x-atp-cache"] == "miss" and _text(reply) == "The provider's answer."
    assert len(stack.upstream.requests) == 2


async def test_everything_but_the_question_must_match_exactly(stack: Stack) -> None:
    stack.answer("The stored answer.")
    async with stack.http() as http:
        await http.post(CHAT, json=_body(QUESTION, max_tokens=50))
        stack.answer("The provider's answer.")
        replies = [
            await http.post(CHAT, json=_body(PARAPHRASE, max_tokens=60)),
            await http.post(CHAT, json=_body(PARAPHRASE, max_tokens=50, temperature=0.5)),
            await http.post(CHAT, json=_body(PARAPHRASE, max_tokens=50, system="Answer in French.")),
            await http.post(CHAT, json=_body(PARAPHRASE, model="exact", max_tokens=50)),
        ]
        same = await http.post(CHAT, json=_body(PARAPHRASE, max_tokens=50))
    async with stack.http(OTHER_KEY) as http:
        other_tenant = await http.post(CHAT, json=_body(PARAPHRASE, max_tokens=50))
    for reply in [*replies, other_tenant]:
        assert reply.headers["x-atp-cache"] == "miss" and _text(reply) == "The provider's answer."
    assert same.headers["x-atp-cache"] == "semantic-hit" and _text(same) == "The stored answer."
    assert len(stack.upstream.requests) == 6


async def test_semantic_matching_is_off_unless_the_route_asks(stack: Stack) -> None:
    async with stack.http() as http:
        await http.post(CHAT, json=_body(QUESTION, model="exact"))
        exact_route = await http.post(CHAT, json=_body(PARAPHRASE, model="exact"))
        refreshed = await http.post(CHAT, json=_body(QUESTION), headers={"x-atp-cache": "refresh"})
        after_refresh = await http.post(CHAT, json=_body(PARAPHRASE))
    assert exact_route.headers["x-atp-cache"] == "miss"
    # A refresh stores (and indexes) its reply without reading: the paraphrase after it finds it.
    assert refreshed.headers["x-atp-cache"] == "refresh"
    assert after_refresh.headers["x-atp-cache"] == "semantic-hit"
    assert len(stack.upstream.requests) == 3
