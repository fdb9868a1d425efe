"""Regions and the response cache seen from clients: HTTP, SSE and WebSocket through the real gateway and adapters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
import websockets

from atp_common.config import AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeOpenAI, FakeReply
from tests.support.stack import adapters_and_gateway

CHAT = "/v1/chat/completions"
EU_KEY, FREE_KEY = "atp-test-eu-key", "atp-test-free-key"


@dataclass
class Stack:
    gateway: GatewayServer
    eu: FakeOpenAI
    us: FakeOpenAI

    def http(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.gateway.port}",
            headers={"authorization": f"Bearer {key}"},
            timeout=10.0,
        )


def _config(eu: FakeOpenAI, us: FakeOpenAI) -> AtpConfig:
    fast = {"max_retries": 0}
    return AtpConfig.model_validate(
        {
            "providers": {
                "azure-eu": {"type": "openai", "base_url": eu.base_url, "region": "eu-west-1", **fast},
                "openai-us": {"type": "openai", "base_url": us.base_url, "region": "us-east-1", **fast},
            },
            "models": {
                "gpt": {
                    "deployments": [{"provider": "azure-eu"}, {"provider": "openai-us"}],
                    "capabilities": ["streaming", "json", "tools"],
                },
            },
            "routes": {
                "auto": {"candidates": ["gpt"]},
                "cached": {"candidates": ["gpt"], "cache": {"ttl_s": 60, "sampled": True}},
            },
            "tenants": {
                "eu": {"api_keys": [{"hash": hash_api_key(EU_KEY), "name": "eu"}], "regions": ["eu-*"]},
                "free": {"api_keys": [{"hash": hash_api_key(FREE_KEY), "name": "free"}]},
            },
        }
    )


@pytest.fixture
async def stack(observer, tmp_path) -> AsyncIterator[Stack]:
    eu, us = FakeOpenAI(), FakeOpenAI()
    await eu.start()
    await us.start()
    eu.reply = us.reply = FakeReply(text="An answer worth keeping.")
    try:
        async with adapters_and_gateway(_config(eu, us), tmp_path, observer_addr=observer[0].address) as gw:
            yield Stack(gw, eu, us)
    finally:
        await eu.stop()
        await us.stop()


def _body(model: str = "auto", text: str = "tell me something", **fields: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


async def _ws_done(stack: Stack, key: str, body: dict[str, object], headers: dict[str, str]) -> dict:
    url = f"ws://127.0.0.1:{stack.gateway.port}/v1/ws"
    async with websockets.connect(
        url, additional_headers={"authorization": f"Bearer {key}", **headers}
    ) as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": body}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("done", "error"):
                return frame


async def test_a_tenant_held_to_the_eu_is_served_there_on_every_transport(stack: Stack) -> None:
    async with stack.http(EU_KEY) as http:
        for _ in range(6):
            reply = await http.post(CHAT, json=_body())
            assert reply.status_code == 200 and reply.headers["x-atp-region"] == "eu-west-1"
        streamed = await http.post(CHAT, json=_body(stream=True))
        assert streamed.status_code == 200 and streamed.headers["x-atp-region"] == "eu-west-1"
        refused = await http.post(CHAT, json=_body(), headers={"x-atp-region": "us-*"})
    frame = await _ws_done(stack, EU_KEY, _body(), {})
    assert frame["type"] == "done" and frame["region"] == "eu-west-1"
    assert stack.us.requests == []
    assert refused.status_code == 403
    assert refused.json()["error"]["param"] == "x-atp-region"


async def test_a_request_may_narrow_its_regions(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        replies = [await http.post(CHAT, json=_body(), headers={"x-atp-region": "us-*"}) for _ in range(4)]
        bad = await http.post(CHAT, json=_body(), headers={"x-atp-region": "us-*,<script>"})
    assert {r.headers["x-atp-deployment"] for r in replies} == {"openai-us/gpt"}
    assert stack.eu.requests == []
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-atp-region"


async def test_cache_miss_then_hit_over_http_and_sse_with_the_original_decision(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        first = await http.post(CHAT, json=_body("cached"))
        second = await http.post(CHAT, json=_body("cached"))
        streamed = await http.post(CHAT, json=_body("cached", stream=True))
    assert first.headers["x-atp-cache"] == "miss" and second.headers["x-atp-cache"] == "hit"
    assert second.headers["x-atp-decision-id"] == first.headers["x-atp-decision-id"]
    assert second.json()["choices"][0]["message"]["content"] == "An answer worth keeping."
    assert streamed.headers["x-atp-cache"] == "hit"
    chunks = [orjson.loads(e[6:]) for e in streamed.content.split(b"\n\n") if e.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == (
        "An answer worth keeping."
    )
    assert streamed.content.endswith(b"data: [DONE]\n\n")
    assert len(stack.eu.requests) + len(stack.us.requests) == 1


async def test_cache_modes_tenants_and_transports(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        await http.post(CHAT, json=_body("cached", text="modes"))
        refreshed = await http.post(
            CHAT, json=_body("cached", text="modes"), headers={"x-atp-cache": "refresh"}
        )
        only_read = await http.post(
            CHAT, json=_body("cached", text="other"), headers={"x-atp-cache": "no-store"}
        )
        after = await http.post(CHAT, json=_body("cached", text="other"))
        bad = await http.post(CHAT, json=_body("cached"), headers={"x-atp-cache": "always"})
    async with stack.http(EU_KEY) as http:
        other_tenant = await http.post(CHAT, json=_body("cached", text="modes"))
    frame = await _ws_done(stack, FREE_KEY, _body("cached", text="modes"), {})
    assert refreshed.headers["x-atp-cache"] == "refresh"
    assert only_read.headers.get("x-atp-cache") is None  # nothing read, nothing stored
    assert after.headers["x-atp-cache"] == "miss"
    assert other_tenant.headers["x-atp-cache"] == "miss"
    assert frame["type"] == "done" and frame["cache"] == "hit"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-atp-cache"
    # modes: the first, the refresh and the other tenant's; other: no-store and the next miss.
    assert len(stack.eu.requests) + len(stack.us.requests) == 5
