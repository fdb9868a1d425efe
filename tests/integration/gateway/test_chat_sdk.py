"""The official openai SDK against the real gateway and adapters, over loopback providers that record what
they receive: chat with every parameter, streaming, tools, filtering, embeddings and the model list."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from atp_common.config import LOCAL_TENANT, AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.base import sse
from tests.support.stack import adapters_and_gateway

KEY = "sk-chat-sdk-0123456789"
OTHER_KEY = "sk-chat-sdk-other-0123"
LOGPROB = {
    "token": "Hi",
    "logprob": -0.25,
    "bytes": [72, 105],
    "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}],
}
CITATION = {
    "type": "url_citation",
    "url_citation": {"url": "https://a.test", "title": "A", "start_index": 0, "end_index": 2},
}
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 8,
    "total_tokens": 28,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 3,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 1,
        "rejected_prediction_tokens": 2,
    },
}


class ScriptedOpenAI(FakeOpenAI):
    """FakeOpenAI that answers with a scripted completion (or chunks), and serves /v1/embeddings."""

    completion: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/chat/completions", self.scripted)

    async def scripted(self, request: web.Request) -> web.StreamResponse:
        if self.completion is None:
            return await self.handle(request)
        body = await self.record(request)
        if body.get("stream"):
            return await self.send_events(
                request, [sse(orjson.dumps(c)) for c in self.chunks or ()] + [sse(b"[DONE]")]
            )
        return web.json_response({**self.completion, "model": body["model"]})

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self.record(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i), 0.25, -1.0]}
            for i in range(len(inputs))
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 6, "total_tokens": 6},
            }
        )


@dataclass
class Stack:
    gateway: GatewayServer
    openai: ScriptedOpenAI
    anthropic: FakeAnthropic

    def client(self, key: str = KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=key, base_url=f"http://127.0.0.1:{self.gateway.port}/v1", max_retries=0
        )


def _config(fake_openai: ScriptedOpenAI, fake_anthropic: FakeAnthropic) -> AtpConfig:
    fast = {"max_retries": 0, "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05}
    chat = ["streaming", "json", "tools", "vision", "audio", "files", "reasoning"]
    return AtpConfig.model_validate(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": fake_openai.base_url, **fast},
                "anthropic": {"type": "anthropic", "base_url": fake_anthropic.base_url, **fast},
            },
            "models": {
                "gpt": {"provider": "openai", "provider_model": "gpt-upstream", "capabilities": chat},
                "claude": {
                    "provider": "anthropic",
                    "provider_model": "claude-upstream",
                    "capabilities": [*chat[:4], "reasoning"],
                    "context_window": 200000,
                },
                "embed": {
                    "provider": "openai",
                    "provider_model": "embed-upstream",
                    "capabilities": ["embeddings"],
                },
            },
            "routes": {"mixed": {"candidates": ["claude", "gpt"]}, "claude-only": {"candidates": ["claude"]}},
            "default_route": "mixed",
            "tenants": {
                LOCAL_TENANT: {"api_keys": [{"hash": hash_api_key(KEY), "name": "t"}]},
                "other": {
                    "api_keys": [{"hash": hash_api_key(OTHER_KEY), "name": "o"}],
                    "allowed_models": ["claude"],
                },
            },
        }
    )


@pytest.fixture
async def stack(tmp_path: Path, observer) -> AsyncIterator[Stack]:
    fake_openai, fake_anthropic = ScriptedOpenAI(), FakeAnthropic()
    async with contextlib.AsyncExitStack() as exits:
        for fake in (fake_openai, fake_anthropic):
            await fake.start()
            exits.push_async_callback(fake.stop)
        gateway = await exits.enter_async_context(
            adapters_and_gateway(
                _config(fake_openai, fake_anthropic), tmp_path, observer_addr=observer[0].address
            )
        )
        yield Stack(gateway, fake_openai, fake_anthropic)


EVERY_PARAMETER: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 0.9,
    "max_completion_tokens": 64,
    "stop": ["END"],
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "n": 2,
    "user": "u-1",
    "safety_identifier": "hash-1",
    "metadata": {"team": "search"},
    "store": True,
    "service_tier": "flex",
    "reasoning_effort": "low",
    "verbosity": "low",
    "parallel_tool_calls": False,
    "prompt_cache_key": "pk",
    "prompt_cache_retention": "24h",
    "prediction": {"type": "content", "content": "Hi there"},
    "web_search_options": {"search_context_size": "low"},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    },
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
}


def _completion() -> dict[str, Any]:
    message = {"role": "assistant", "content": "Hi there", "refusal": None, "annotations": [CITATION]}
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1700000000,
        "system_fingerprint": "fp_up",
        "service_tier": "flex",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": [LOGPROB], "refusal": None},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "refusal": "I can't."},
                "logprobs": None,
                "finish_reason": "stop",
            },
        ],
        "usage": USAGE,
    }


async def test_every_parameter_reaches_openai_and_every_reply_field_the_client(stack: Stack) -> None:
    stack.openai.completion = _completion()
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://i.test/a.png"}},
            ],
        },
    ]
    raw = await stack.client().chat.completions.with_raw_response.create(
        model="gpt", messages=messages, **EVERY_PARAMETER
    )
    body = orjson.loads(raw.content)
    ChatCompletion.model_validate(body, strict=True)
    sent = stack.openai.requests[-1].body
    for name, value in EVERY_PARAMETER.items():
        if name != "max_completion_tokens":
            assert sent[name] == value, name
    assert 64 in (sent.get("max_completion_tokens"), sent.get("max_tokens"))
    assert sent["messages"][0]["content"][0]["text"] == "be brief"
    assert sent["messages"][1]["content"][1]["image_url"]["url"] == "https://i.test/a.png"
    first, second = body["choices"]
    assert first["message"]["content"] == "Hi there" and first["message"]["annotations"] == [CITATION]
    assert first["logprobs"]["content"] == [LOGPROB]
    assert second["index"] == 1 and second["message"]["refusal"] == "I can't."
    assert (body["system_fingerprint"], body["service_tier"]) == ("fp_up", "flex")
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert body["usage"]["completion_tokens_details"]["rejected_prediction_tokens"] == 2


async def test_streamed_choices_refusal_and_usage(stack: Stack) -> None:
    stack.openai.completion = _completion()
    head = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-upstream",
        "system_fingerprint": "fp_up",
    }
    stack.openai.chunks = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "Hi"},
                    "logprobs": {"content": [LOGPROB]},
                    "finish_reason": None,
                }
            ],
        },
        {
            **head,
            "choices": [
                {"index": 1, "delta": {"role": "assistant", "refusal": "No."}, "finish_reason": None}
            ],
        },
        {
            **head,
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {}, "finish_reason": "stop"},
            ],
        },
        {**head, "choices": [], "usage": USAGE},
    ]
    stream = await stack.client().chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": "hi"}],
        n=2,
        logprobs=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump(exclude_unset=True), strict=True)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices if c.index == 0)
    refusal = "".join(c.delta.refusal or "" for chunk in chunks for c in chunk.choices if c.index == 1)
    assert (text, refusal) == ("Hi", "No.")
    finishes = {c.index: c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason}
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 28
    sent = stack.openai.requests[-1].body
    assert sent["stream"] is True and sent["n"] == 2 and sent["stream_options"]["include_usage"] is True


async def test_tool_calls_round_trip(stack: Stack) -> None:
    stack.openai.reply.tool_calls = [("lookup", '{"q": "atp"}')]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = await stack.client().chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "find"}], tools=tools
    )
    call = reply.choices[0].message.tool_calls[0]
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("lookup", {"q": "atp"})
    assert reply.choices[0].finish_reason == "tool_calls"
    follow_up = [
        {"role": "user", "content": "find"},
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": "found"}]},
    ]
    await stack.client().chat.completions.create(model="gpt", messages=follow_up, tools=tools)
    sent = stack.openai.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert sent[2]["tool_call_id"] == call.id and "found" in orjson.dumps(sent[2]["content"]).decode()


async def test_anthropic_gets_each_parameter_in_its_own_terms(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    await stack.client().chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {"role": "user", "content": "hi"},
        ],
        tools=tools,
        parallel_tool_calls=False,
        reasoning_effort="high",
        user="u-9",
        max_completion_tokens=20000,
    )
    sent = stack.anthropic.requests[-1].body
    assert "sys" in orjson.dumps(sent["system"]).decode()
    assert sent["thinking"]["type"] == "enabled" and sent["thinking"]["budget_tokens"] > 0
    assert sent["tool_choice"]["disable_parallel_tool_use"] is True
    assert sent["metadata"]["user_id"] == "u-9"


async def test_candidates_that_cannot_honour_a_parameter_are_filtered_or_refused(stack: Stack) -> None:
    raw = await stack.client().chat.completions.with_raw_response.create(
        model="mixed", messages=[{"role": "user", "content": "hi"}], logprobs=True
    )
    assert raw.headers["x-atp-model"] == "gpt"
    with pytest.raises(openai.BadRequestError) as refused:
        await stack.client().chat.completions.create(
            model="claude-only", messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    assert refused.value.body["param"] == "logprobs"
    assert not stack.anthropic.requests


async def test_embeddings_through_the_sdk(stack: Stack) -> None:
    client = stack.client()
    # The SDK asks for base64 by default and decodes it.
    reply = await client.embeddings.create(model="embed", input=["one", "two"])
    assert [d.embedding for d in reply.data] == [[0.0, 0.25, -1.0], [1.0, 0.25, -1.0]]
    raw = await client.embeddings.with_raw_response.create(
        model="embed", input="one", encoding_format="float", dimensions=3
    )
    CreateEmbeddingResponse.model_validate(orjson.loads(raw.content), strict=True)
    sent = stack.openai.requests[-1].body
    assert sent["input"] in ("one", ["one"]) and sent["dimensions"] == 3 and sent["model"] == "embed-upstream"


async def test_models_are_the_tenants_own(stack: Stack) -> None:
    mine = {m.id async for m in stack.client().models.list()}
    assert {"gpt", "claude", "mixed"} <= mine
    theirs = {m.id async for m in stack.client(OTHER_KEY).models.list()}
    assert "claude" in theirs and "gpt" not in theirs and "embed" not in theirs
    assert (await stack.client(OTHER_KEY).models.retrieve("claude")).id == "claude"
    with pytest.raises(openai.NotFoundError):
        await stack.client(OTHER_KEY).models.retrieve("gpt")


async def test_audio_output_legacy_functions_and_openai_only_options(stack: Stack) -> None:
    audio = {"id": "audio_1", "data": "UklGRg==", "expires_at": 1700003600, "transcript": "Hi"}
    stack.openai.completion = {
        **_completion(),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None, "audio": audio},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    options = {
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "moderation": {"model": "omni-moderation-latest"},
        "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
        "max_tokens": 32,
        "stop": "END",
    }
    messages = [
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
        }
    ]
    raw = await stack.client().chat.completions.with_raw_response.create(
        model="gpt", messages=messages, **options
    )
    body = orjson.loads(raw.content)
    ChatCompletion.model_validate(body, strict=True)
    assert body["choices"][0]["message"]["audio"] == audio
    sent = stack.openai.requests[-1].body
    for name in ("modalities", "audio", "moderation", "prompt_cache_options"):
        assert sent[name] == options[name], name
    assert sent["messages"][0]["content"][0]["input_audio"] == {"data": "UklGRg==", "format": "wav"}
    assert 32 in (sent.get("max_tokens"), sent.get("max_completion_tokens")) and sent["stop"] in (
        "END",
        ["END"],
    )

    stack.openai.completion = None
    stack.openai.reply.tool_calls = [("lookup", "{}")]
    functions = [{"name": "lookup", "parameters": {"type": "object"}}]
    reply = await stack.client().chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "find"}], functions=functions, function_call="auto"
    )
    assert reply.choices[0].finish_reason == "function_call"
    assert reply.choices[0].message.function_call.name == "lookup"
    sent = stack.openai.requests[-1].body
    # Legacy functions travel as tools (what OpenAI's API accepts today) and come back as function_call.
    assert sent["tools"][0]["function"]["name"] == "lookup" and sent["tool_choice"] == "auto"
