"""The Gemini provider against a fake Gemini API server: contents and parts, function calls, usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import GeminiProvider, ProviderError, ProviderRequest
from atp_adapters.providers.base import GEMINI_SIGNED
from atp_adapters.providers.gemini_encode import UNSIGNED_CALL
from atp_common import errors
from atp_common.config import HttpProvider
from tests.fakes import FakeGemini, FakeReply, Faults, running_fake_gemini
from tests.support.collect import collect
from tests.support.full_reply import collect_full

TOOLS = [chat_pb2.Tool(type="function", name="weather", parameters_json=b'{"type":"object"}')]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with running_fake_gemini() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    client = GeminiProvider(
        HttpProvider(type="gemini", base_url=fake.base_url, idle_timeout_s=0.3), api_key="g-key", name="gem"
    )
    yield client
    await client.close()


def request(stream: bool = True, **params) -> ProviderRequest:
    messages = [
        chat_pb2.ChatMessage(role="system", content="be brief"),
        chat_pb2.ChatMessage(role="user", content="weather in Paris?"),
    ]
    return ProviderRequest("gemini-test", messages, chat_pb2.GenerationParams(**params), stream=stream)


@pytest.mark.parametrize("stream", [True, False])
async def test_text_reply_with_thoughts_and_cache_usage(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    fake.reply = FakeReply(
        text="Sunny and mild.", prompt_tokens=30, completion_tokens=12, cached_tokens=10, reasoning_tokens=5
    )
    reply = await collect_full(
        provider.stream(request(stream=stream, max_tokens=50, temperature=0.1, seed=3))
    )
    assert reply.first.text == "Sunny and mild." and reply.first.thinking == [("Let me think.", "")]
    assert reply.finish_reason == "stop" and reply.first.role == "assistant"
    assert reply.response_id == "resp-1" and reply.model_version == "fake-001"
    assert reply.usage == chat_pb2.Usage(
        prompt_tokens=30, completion_tokens=12, cached_prompt_tokens=10, reasoning_tokens=5
    )
    sent = fake.requests[0]
    method = "streamGenerateContent" if stream else "generateContent"
    assert sent.path == f"/v1beta/models/gemini-test:{method}"
    assert sent.query == ({"alt": "sse"} if stream else {})
    assert sent.headers["x-goog-api-key"] == "g-key"
    assert sent.body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "weather in Paris?"}]}]
    assert sent.body["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 50, "seed": 3}


@pytest.mark.parametrize("stream", [True, False])
async def test_function_calls_become_tool_calls(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    fake.reply = FakeReply(text="", tool_calls=[("weather", '{"city":"Paris"}')])
    reply = await collect_full(
        provider.stream(request(stream=stream, tools=TOOLS, tool_choice=chat_pb2.ToolChoice(mode="auto")))
    )
    assert reply.finish_reason == "tool_calls"
    # The call's thoughtSignature, marked as Gemini's, to be sent back with it (and to no other provider).
    assert reply.first.thinking == [("", GEMINI_SIGNED + "ts0")]
    [(call_id, name, arguments)] = reply.first.tool_calls.values()
    assert call_id.startswith("call_") and name == "weather" and orjson.loads(arguments) == {"city": "Paris"}
    body = fake.requests[0].body
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "weather", "parametersJsonSchema": {"type": "object"}}]}
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


async def test_tool_round_trip_and_json_mode(fake: FakeGemini, provider: GeminiProvider) -> None:
    schema = {"type": "object", "properties": {"t": {"type": "number"}}}
    response_format = chat_pb2.ResponseFormat(type="json_schema", name="w", schema_json=orjson.dumps(schema))
    req = request(stream=False, response_format=response_format)
    call = chat_pb2.ToolCall(
        id="call_9", type="function", function_name="weather", arguments='{"city":"Paris"}'
    )
    req.messages = [
        *req.messages,
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="tool", tool_call_id="call_9", content='{"temp": 21}'),
    ]
    await collect(provider.stream(req))
    body = fake.requests[0].body
    # The call came without a signature (an OpenAI client keeps none): Google's value for unsigned calls.
    unsigned = {
        "functionCall": {"name": "weather", "args": {"city": "Paris"}},
        "thoughtSignature": UNSIGNED_CALL,
    }
    assert body["contents"][1:] == [
        {"role": "model", "parts": [unsigned]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"temp": 21}}}]},
    ]
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}


async def test_errors_idle_timeout_and_disconnect(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.faults = Faults(status=429, retry_after="2", error_message="Quota exceeded", times=1)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert isinstance(info.value.to_atp(), errors.RateLimited) and "Quota exceeded" in info.value.message
    assert info.value.retry_after == 2

    fake.faults = Faults(hang_after_chunks=2)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "timeout" and not info.value.before_first_token
    await fake.wait_for_disconnects(1, within_s=2)

    fake.faults = Faults(chunk_delay_s=0.05)
    async with aclosing(provider.stream(request())) as stream:
        async for _ in stream:
            break
    await fake.wait_for_disconnects(2, within_s=2)

    fake.faults = Faults(cut_after_chunks=3)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "cut" and info.value.chunks_received == 3
