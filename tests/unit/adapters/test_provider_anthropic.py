"""The Anthropic provider against a fake Messages API server: translation both ways, errors, streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import AnthropicProvider, ProviderError, ProviderRequest
from atp_common import errors
from atp_common.config import HttpProvider
from tests.fakes import FakeAnthropic, FakeReply, Faults, running_fake_anthropic
from tests.support.collect import collect

TOOLS = [
    chat_pb2.Tool(
        type="function", name="weather", description="Weather now", parameters_json=b'{"type":"object"}'
    )
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with running_fake_anthropic() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    client = AnthropicProvider(
        HttpProvider(type="anthropic", base_url=fake.base_url, first_token_timeout_s=0.3),
        api_key="sk-ant",
        name="claude",
    )
    yield client
    await client.close()


def request(stream: bool = True, **params) -> ProviderRequest:
    messages = [
        chat_pb2.ChatMessage(role="system", content="be brief"),
        chat_pb2.ChatMessage(role="user", content="weather in Paris and Rome?"),
    ]
    return ProviderRequest("claude-test", messages, chat_pb2.GenerationParams(**params), stream=stream)


@pytest.mark.parametrize("stream", [True, False])
async def test_text_reply_with_cached_usage(
    fake: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    fake.reply = FakeReply(
        text="Sunny in both.", prompt_tokens=20, cached_tokens=12, cache_write_tokens=3, completion_tokens=4
    )
    reply = await collect(provider.stream(request(stream=stream)))
    assert reply.text == "Sunny in both."
    assert reply.finish_reason == "stop" and reply.roles == ["assistant"]
    assert reply.usage == chat_pb2.Usage(
        prompt_tokens=20, completion_tokens=4, cached_prompt_tokens=12, cache_write_tokens=3
    )
    sent = fake.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "be brief"  # a plain system prompt goes as the string it was
    assert sent.body["messages"] == [{"role": "user", "content": "weather in Paris and Rome?"}]
    assert sent.body["max_tokens"] == 4096  # required by the API: the default when none is given
    assert sent.body.get("stream", False) is stream


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_use_comes_back_as_tool_calls(
    fake: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    fake.reply = FakeReply(
        text="Let me look.", tool_calls=[("weather", '{"city":"Paris"}'), ("weather", '{"city":"Rome"}')]
    )
    req = request(
        stream=stream, tools=TOOLS, tool_choice=chat_pb2.ToolChoice(mode="required"), max_tokens=100
    )
    reply = await collect(provider.stream(req))
    assert reply.text == "Let me look."
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == {
        0: ["toolu_0", "weather", '{"city":"Paris"}'],
        1: ["toolu_1", "weather", '{"city":"Rome"}'],
    }
    body = fake.requests[0].body
    assert body["tools"] == [
        {"name": "weather", "input_schema": {"type": "object"}, "description": "Weather now"}
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["max_tokens"] == 100


async def test_tool_results_go_back_as_tool_result_blocks(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    req = request(stream=False, stop=["END"], temperature=0.2, user="u7")
    calls = [
        chat_pb2.ToolCall(
            id="toolu_0", type="function", function_name="weather", arguments='{"city":"Paris"}'
        ),
        chat_pb2.ToolCall(
            id="toolu_1", type="function", function_name="weather", arguments='{"city":"Rome"}'
        ),
    ]
    req.messages = [
        *req.messages,
        chat_pb2.ChatMessage(role="assistant", content="Checking.", tool_calls=calls),
        chat_pb2.ChatMessage(role="tool", tool_call_id="toolu_0", content="sunny"),
        chat_pb2.ChatMessage(role="tool", tool_call_id="toolu_1", content="rainy"),
    ]
    await collect(provider.stream(req))
    body = fake.requests[0].body
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_0", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_0", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy"},
            ],
        },
    ]
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.2
    assert body["metadata"] == {"user_id": "u7"}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"seed": 1}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"response_format": chat_pb2.ResponseFormat(type="json_object")}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"store": True}, "store"),
        ({"openai_options": {"web_search_options": b"{}"}}, "web_search_options"),
    ],
)
async def test_unsupported_parameters_are_refused_before_any_request(
    fake: FakeAnthropic, provider: AnthropicProvider, params: dict, name: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request(**params)))
    atp_error = info.value.to_atp()
    assert isinstance(atp_error, errors.InvalidArgument) and atp_error.param == name
    assert name in atp_error.message
    assert info.value.is_request_fault and not info.value.counts_for_circuit
    assert fake.requests == []


async def test_overloaded_and_rate_limited(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.faults = Faults(status=529, error_message="Overloaded", times=1)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.retryable and "Overloaded" in info.value.message
    assert isinstance(info.value.to_atp(), errors.UpstreamError)
    fake.faults = Faults(status=429, retry_after="3")
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert isinstance(info.value.to_atp(), errors.RateLimited) and info.value.retry_after == 3


async def test_hang_times_out_and_cut_stream_is_an_error(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.faults = Faults(hang_s=30, times=1)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "timeout" and time.monotonic() - started < 1.5
    fake.faults = Faults(cut_after_chunks=5)  # message_start, block start, ping, two text deltas
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "cut" and info.value.chunks_received == 5
    assert not info.value.before_first_token


async def test_malformed_event_mid_stream(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.faults = Faults(malformed_after_chunks=3)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "malformed"


async def test_aclose_disconnects(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.faults = Faults(hang_after_chunks=4)
    async with aclosing(provider.stream(request())) as stream:
        async for batch in stream:
            if batch.deltas:
                break
    await fake.wait_for_disconnects(1, within_s=2)
