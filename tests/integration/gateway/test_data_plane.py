"""The data plane's promises seen from the client: the gateway (real uvicorn) in front of the real adapters,
which call fault-injecting fake OpenAI, Anthropic and Gemini servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
import websockets

from atp_common.config import LOCAL_TENANT, AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeReply, Faults
from tests.support.stack import adapters_and_gateway

CHAT = "/v1/chat/completions"
TIMEOUT = 10.0


@dataclass
class Stack:
    gateway: GatewayServer
    openai: FakeOpenAI
    backup: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    http: httpx.AsyncClient
    api_key: str

    def ws(self):
        return websockets.connect(
            f"ws://127.0.0.1:{self.gateway.port}/v1/ws",
            additional_headers={"authorization": f"Bearer {self.api_key}"},
        )


def _config(stack_fakes: dict[str, object], api_key: str) -> AtpConfig:
    fast = {"max_retries": 0, "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05}
    everything = ["streaming", "json", "tools"]
    return AtpConfig.model_validate(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": stack_fakes["openai"].base_url, **fast},
                "backup": {"type": "openai", "base_url": stack_fakes["backup"].base_url, **fast},
                "anthropic": {"type": "anthropic", "base_url": stack_fakes["anthropic"].base_url, **fast},
                "gemini": {"type": "gemini", "base_url": stack_fakes["gemini"].base_url, **fast},
            },
            "models": {
                "gpt": {"provider": "openai", "provider_model": "gpt-upstream", "capabilities": everything},
                "gpt-backup": {"provider": "backup", "capabilities": everything},
                # Anthropic has no JSON mode: routing knows it from the capabilities.
                "claude": {
                    "provider": "anthropic",
                    "provider_model": "claude-upstream",
                    "capabilities": ["streaming", "tools"],
                },
                "gem": {
                    "provider": "gemini",
                    "provider_model": "gemini-upstream",
                    "capabilities": everything,
                },
            },
            "routes": {"chain": {"candidates": ["gpt", "gpt-backup"]}},
            "default_route": "chain",
            "tenants": {LOCAL_TENANT: {"api_keys": [{"hash": hash_api_key(api_key), "name": "t"}]}},
        }
    )


@pytest.fixture
async def stack(observer, tmp_path, api_key) -> AsyncIterator[Stack]:
    fakes = {
        "openai": FakeOpenAI(),
        "backup": FakeOpenAI(),
        "anthropic": FakeAnthropic(),
        "gemini": FakeGemini(),
    }
    for fake in fakes.values():
        await fake.start()
    try:
        async with (
            adapters_and_gateway(
                _config(fakes, api_key), tmp_path, observer_addr=observer[0].address
            ) as gateway,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{gateway.port}",
                headers={"authorization": f"Bearer {api_key}"},
                timeout=TIMEOUT,
            ) as http,
        ):
            yield Stack(
                gateway, fakes["openai"], fakes["backup"], fakes["anthropic"], fakes["gemini"], http, api_key
            )
    finally:
        for fake in fakes.values():
            await fake.stop()


def _body(model: str = "gpt", **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "tell me something"}], **fields}


def _sse_events(raw: bytes) -> list[bytes]:
    return [event for event in raw.split(b"\n\n") if event.strip()]


def _data(event: bytes) -> dict:
    assert event.startswith(b"data: "), event
    return orjson.loads(event[6:])


async def _frames_until(ws, request_id: str, final: tuple[str, ...]) -> list[dict]:
    frames = []
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert frame["id"] == request_id, frame
        frames.append(frame)
        if frame["type"] in final:
            return frames


# Stream cut mid-way: an explicit error, never a clean-looking truncated answer.


async def test_sse_stream_cut_mid_way_ends_with_an_error_event_and_no_done(stack: Stack):
    stack.openai.faults = Faults(cut_after_chunks=4)
    response = await stack.http.post(CHAT, json=_body(stream=True))
    assert response.status_code == 200, response.text
    assert response.headers["x-atp-model"] == "gpt"
    events = _sse_events(response.content)
    assert b"data: [DONE]" not in events
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in _data(event).get("choices", [])
    )
    assert text and FakeReply().text.startswith(text), "the output before the cut reached the client"
    error = _data(events[-1])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    finishes = [c.get("finish_reason") for e in events[:-1] for c in _data(e).get("choices", [])]
    assert not any(finishes), "a cut stream carries no finish reason"
    assert not stack.backup.requests, "no failover once output was sent"


async def test_websocket_stream_cut_mid_way_is_an_error_frame_for_that_request(stack: Stack):
    stack.openai.faults = Faults(cut_after_chunks=4)
    async with stack.ws() as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "cut", "body": _body(stream=True)}).decode())
        frames = await _frames_until(ws, "cut", ("error", "done"))
    assert frames[-1]["type"] == "error", "a cut stream is never a done frame"
    assert frames[-1]["error"]["message"]
    deltas = [f["delta"].get("content", "") for f in frames if f["type"] == "delta"]
    assert "".join(deltas), "the output before the cut reached the client"


# Client disconnect and cancel reach the provider: the fake server sees its connection close.


async def test_sse_client_disconnect_cancels_the_upstream_request(stack: Stack):
    stack.openai.faults = Faults(chunk_delay_s=0.3)
    async with stack.http.stream("POST", CHAT, json=_body(stream=True)) as response:
        assert response.status_code == 200, response.text
        async for chunk in response.aiter_raw():
            if b'"content"' in chunk:
                break  # output is flowing; now the client goes away
    await stack.openai.wait_for_disconnects(1, within_s=5)


async def test_websocket_cancel_and_close_cancel_the_upstream_request(stack: Stack):
    stack.openai.faults = Faults(chunk_delay_s=0.3)
    async with stack.ws() as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "c1", "body": _body(stream=True)}).decode())
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert frame["type"] == "delta"
        await ws.send(orjson.dumps({"type": "cancel", "id": "c1"}).decode())
        frames = await _frames_until(ws, "c1", ("cancelled",))
        assert frames[-1]["type"] == "cancelled"
        await stack.openai.wait_for_disconnects(1, within_s=5)

        await ws.send(orjson.dumps({"type": "request", "id": "c2", "body": _body(stream=True)}).decode())
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert frame["type"] == "delta"
    # The socket closed with a request in flight: that upstream call ends too.
    await stack.openai.wait_for_disconnects(2, within_s=5)


# Failover before the first token, for streamed and non-streamed requests alike.


@pytest.mark.parametrize("stream", [True, False])
async def test_failover_to_the_second_candidate_before_the_first_token(stack: Stack, stream: bool):
    stack.openai.faults = Faults(status=500)
    stack.backup.reply = FakeReply(text="from the backup")
    response = await stack.http.post(CHAT, json=_body("chain", stream=stream))
    assert response.status_code == 200 and response.headers["x-atp-model"] == "gpt-backup"
    if stream:
        events = _sse_events(response.content)
        assert events[-1] == b"data: [DONE]"
        text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in _data(e)["choices"])
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert text == "from the backup"
    assert len(stack.openai.requests) == 1 and len(stack.backup.requests) == 1


# Parameters: passed through where supported, a clear 400 where not.


async def test_parameters_pass_through_to_an_openai_compatible_provider(stack: Stack):
    body = _body(
        max_completion_tokens=50,
        response_format={"type": "json_object"},
        seed=42,
        user="end-user-7",
        stop=["\n\n"],
        temperature=0.3,
        top_p=0.9,
    )
    response = await stack.http.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    sent = stack.openai.requests[-1].body
    assert sent["model"] == "gpt-upstream"
    assert sent["max_completion_tokens"] == 50  # under the name the client used
    assert sent["response_format"] == {"type": "json_object"}
    assert (sent["seed"], sent["user"], sent["stop"]) == (42, "end-user-7", ["\n\n"])
    assert (sent["temperature"], sent["top_p"]) == (0.3, 0.9)


async def test_parameters_translate_for_anthropic_and_gemini(stack: Stack):
    response = await stack.http.post(CHAT, json=_body("claude", max_completion_tokens=60, user="u-1"))
    assert response.status_code == 200, response.text
    sent = stack.anthropic.requests[-1].body
    assert (sent["model"], sent["max_tokens"], sent["metadata"]) == (
        "claude-upstream",
        60,
        {"user_id": "u-1"},
    )

    body = _body("gem", max_completion_tokens=70, seed=5, response_format={"type": "json_object"})
    response = await stack.http.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    generation = stack.gemini.requests[-1].body["generationConfig"]
    assert generation["maxOutputTokens"] == 70 and generation["seed"] == 5
    assert generation["responseMimeType"] == "application/json"


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        # Candidates whose provider type or model cannot honour a parameter are filtered before routing;
        # with none left, the 400 names the parameter and what the candidate lacks.
        ({"seed": 1}, "seed", "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty", "penalties"),
        ({"response_format": {"type": "json_object"}}, "response_format", "lacks json"),
    ],
)
async def test_a_parameter_the_provider_cannot_honour_is_a_clear_400(
    stack: Stack, fields: dict, param: str | None, says: str
):
    response = await stack.http.post(CHAT, json=_body("claude", **fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"]
    assert error["type"] == "invalid_request_error"
    assert not stack.anthropic.requests, "refused before anything was sent"


# Anthropic and Gemini through the whole stack: tool calls and usage, streamed.


@pytest.mark.parametrize("model", ["claude", "gem"])
async def test_tool_calls_and_usage_from_anthropic_and_gemini_stream_as_openai_chunks(
    stack: Stack, model: str
):
    fake = stack.anthropic if model == "claude" else stack.gemini
    fake.reply = FakeReply(
        text="",
        tool_calls=[("get_weather", '{"city":"Paris"}')],
        prompt_tokens=30,
        cached_tokens=10,
        completion_tokens=12,
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = _body(model, stream=True, tools=tools, stream_options={"include_usage": True})
    response = await stack.http.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    events = _sse_events(response.content)
    assert events[-1] == b"data: [DONE]"
    chunks = [_data(e) for e in events[:-1]]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    assert "".join(tc["function"].get("arguments") or "" for tc in calls) == '{"city":"Paris"}'
    finish = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finish == ["tool_calls"]
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (30, 12)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 10
