"""The OpenAI provider against a fake OpenAI server on loopback: wire format, errors, timeouts, cuts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import OpenAIProvider, ProviderError, ProviderRequest
from atp_adapters.providers._http import SseDecoder, SseError
from atp_adapters.providers.base import USER_AGENT
from atp_common import errors
from atp_common.config import HttpProvider
from tests.fakes import FakeOpenAI, FakeReply, Faults, running_fake_openai
from tests.support.collect import collect

TOOLS = [chat_pb2.Tool(type="function", name="weather", parameters_json=b'{"type":"object"}')]
TOOLS_WIRE = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


def make(fake: FakeOpenAI, **overrides) -> OpenAIProvider:
    settings = {"type": "openai", "base_url": fake.base_url, **overrides}
    return OpenAIProvider(HttpProvider(**settings), api_key="sk-test", name="oai")


def request(stream: bool = True, include_usage: bool = True, **params) -> ProviderRequest:
    messages = [
        chat_pb2.ChatMessage(role="system", content="be brief"),
        chat_pb2.ChatMessage(role="user", content="weather in Paris?"),
    ]
    return ProviderRequest(
        "gpt-test", messages, chat_pb2.GenerationParams(**params), stream=stream, include_usage=include_usage
    )


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    client = make(fake)
    yield client
    await client.close()


async def test_stream_and_non_stream_give_the_same_reply_and_usage(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.reply = FakeReply(text="It is sunny in Paris.", cached_tokens=4, reasoning_tokens=2)
    streamed = await collect(provider.stream(request()))
    whole = await collect(provider.stream(request(stream=False)))
    for reply in (streamed, whole):
        assert reply.text == "It is sunny in Paris."
        assert reply.roles == ["assistant"]
        assert reply.finish_reason == "stop"
        assert reply.terminal_batches == 1
        assert reply.usage == chat_pb2.Usage(
            prompt_tokens=11, completion_tokens=9, cached_prompt_tokens=4, reasoning_tokens=2
        )
    assert whole.batches == 1
    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Paris?"},
    ]
    assert "stream_options" not in fake.requests[1].body


async def test_without_include_usage_no_usage_is_asked_or_reported(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    reply = await collect(provider.stream(request(include_usage=False)))
    assert reply.usage is None
    assert "stream_options" not in fake.requests[0].body


async def test_params_and_tool_messages_pass_through(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    req = request(
        stream=False,
        temperature=0.5,
        max_tokens=64,
        seed=7,
        stop=["END"],
        user="u1",
        tools=TOOLS,
        tool_choice=chat_pb2.ToolChoice(mode="auto"),
        response_format=chat_pb2.ResponseFormat(type="text"),
    )
    call = chat_pb2.ToolCall(
        id="call_1", type="function", function_name="weather", arguments='{"city":"Paris"}'
    )
    parts = [chat_pb2.ContentPart(text="and this?")]
    req.messages = [
        *req.messages,
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="tool", tool_call_id="call_1", content="sunny"),
        chat_pb2.ChatMessage(role="user", parts=parts),
    ]
    await collect(provider.stream(req))
    body = fake.requests[0].body
    assert body["temperature"] == 0.5 and body["max_tokens"] == 64 and body["seed"] == 7
    assert body["stop"] == ["END"] and body["user"] == "u1"
    assert body["tools"] == TOOLS_WIRE and body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "text"}
    assert "top_p" not in body and "presence_penalty" not in body and "max_completion_tokens" not in body
    assert body["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "user", "content": [{"type": "text", "text": "and this?"}]},
    ]


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_calls_assemble(fake: FakeOpenAI, provider: OpenAIProvider, stream: bool) -> None:
    fake.reply = FakeReply(text="", tool_calls=[("weather", '{"city": "Paris"}'), ("time", '{"tz": "CET"}')])
    reply = await collect(provider.stream(request(stream=stream, tools=TOOLS)))
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == {
        0: ["call_0", "weather", '{"city": "Paris"}'],
        1: ["call_1", "time", '{"tz": "CET"}'],
    }
    assert reply.text == ""


async def test_batches_follow_network_reads(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.reply = FakeReply(text="one two three four")
    fake.faults = Faults(chunk_delay_s=0.03)
    reply = await collect(provider.stream(request()))
    # Each paced event is its own read; the finish, usage and [DONE] events share the last reads.
    assert reply.text == "one two three four"
    assert reply.batches >= 4


@pytest.mark.parametrize(
    ("status", "atp_class", "retryable"),
    [
        (429, errors.RateLimited, True),
        (500, errors.UpstreamError, True),
        (503, errors.UpstreamError, True),
        (400, errors.InvalidArgument, False),
        (401, errors.UpstreamError, False),
        (403, errors.UpstreamError, False),
        (404, errors.UpstreamError, False),
    ],
)
async def test_http_errors_map_to_typed_errors(
    fake: FakeOpenAI, provider: OpenAIProvider, status: int, atp_class: type, retryable: bool
) -> None:
    fake.faults = Faults(status=status, retry_after="1.5", error_message="the provider says no")
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    error = info.value
    assert error.kind == "http" and error.status == status
    assert error.retryable is retryable
    assert error.retry_after == 1.5
    assert error.before_first_token
    assert "the provider says no" in error.message
    assert type(error.to_atp()) is atp_class
    assert error.counts_for_circuit is (status != 400)


async def test_error_applies_only_as_often_as_scheduled(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.faults = Faults(status=500, times=1)
    with pytest.raises(ProviderError):
        await collect(provider.stream(request()))
    assert (await collect(provider.stream(request()))).finish_reason == "stop"


async def test_hang_before_first_byte_times_out_quickly_and_frees_the_server(fake: FakeOpenAI) -> None:
    fake.faults = Faults(hang_s=30)
    provider = make(fake, first_token_timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert time.monotonic() - started < 1.0
    assert info.value.kind == "timeout" and "first-token" in info.value.message
    assert isinstance(info.value.to_atp(), errors.DeadlineExceeded)
    await fake.wait_for_disconnects(1)
    await provider.close()


async def test_non_stream_hang_is_bounded_by_total_timeout_and_request_deadline(fake: FakeOpenAI) -> None:
    fake.faults = Faults(hang_s=30)
    provider = make(fake, total_timeout_s=0.2)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request(stream=False)))
    assert info.value.kind == "timeout" and "total timeout" in info.value.message
    req = request()
    req.deadline = time.monotonic() + 0.15
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(req))
    assert "request deadline" in info.value.message
    assert time.monotonic() - started < 1.0
    await provider.close()


async def test_idle_timeout_mid_stream_is_after_first_token(fake: FakeOpenAI) -> None:
    fake.faults = Faults(hang_after_chunks=3)
    provider = make(fake, idle_timeout_s=0.2)
    batches = []
    with pytest.raises(ProviderError) as info:
        async for batch in provider.stream(request()):
            batches.append(batch)
    error = info.value
    assert error.kind == "timeout" and "idle" in error.message
    assert not error.before_first_token
    assert error.chunks_received == 3
    assert "".join(d.content for b in batches for d in b.deltas) == "Hello from"
    await fake.wait_for_disconnects(1)
    await provider.close()


async def test_cut_stream_reports_chunks_delivered(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.faults = Faults(cut_after_chunks=4)
    text = ""
    with pytest.raises(ProviderError) as info:
        async for batch in provider.stream(request()):
            text += "".join(d.content for d in batch.deltas)
    error = info.value
    assert error.kind == "cut"
    assert error.chunks_received == 4 and "after 4 chunks" in error.message
    assert not error.before_first_token and not error.retryable
    assert text == "Hello from the"
    assert isinstance(error.to_atp(), errors.UpstreamError)


async def test_cut_before_any_content_is_before_first_token(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.faults = Faults(cut_after_chunks=1)  # only the role chunk arrives
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.before_first_token and info.value.retryable


async def test_malformed_sse_is_a_malformed_error(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.faults = Faults(malformed_after_chunks=2)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "malformed"
    assert info.value.chunks_received == 3
    assert isinstance(info.value.to_atp(), errors.UpstreamError)


async def test_client_aclose_closes_the_upstream_connection(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.faults = Faults(chunk_delay_s=0.05)
    async with aclosing(provider.stream(request())) as stream:
        async for batch in stream:
            assert batch.deltas
            break
    await fake.wait_for_disconnects(1, within_s=2)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    fake.faults = Faults(hang_after_chunks=2)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(request()):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnects(1, within_s=2)


async def test_connection_refused_is_retryable_unavailable() -> None:
    provider = OpenAIProvider(HttpProvider(type="openai", base_url="http://127.0.0.1:1/v1"), "", "down")
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(request()))
    assert info.value.kind == "connect" and info.value.retryable
    assert isinstance(info.value.to_atp(), errors.Unavailable)
    await provider.close()


async def test_connections_are_pooled(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    for _ in range(3):
        await collect(provider.stream(request()))
    assert len(fake.requests) == 3
    session = provider._client()
    connector = session.connector
    assert connector is not None and connector.limit == 256
    assert sum(len(v) for v in connector._conns.values()) == 1


async def test_azure_path_and_key_header(fake: FakeOpenAI) -> None:
    base = fake.base_url.removesuffix("/v1")
    provider = OpenAIProvider(
        HttpProvider(type="azure", base_url=base, api_version="2024-06-01"), api_key="az-key", name="az"
    )
    reply = await collect(provider.stream(request(stream=False)))
    assert reply.text
    sent = fake.requests[0]
    assert sent.path == "/openai/deployments/gpt-test/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}
    assert sent.headers["api-key"] == "az-key" and "Authorization" not in sent.headers
    await provider.close()


def test_sse_decoder_handles_split_events_crlf_comments_and_multiline() -> None:
    decoder = SseDecoder()
    stream = b': ping\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\ndata: [DONE]\n\n'
    events = []
    for i in range(len(stream)):  # worst case: one byte per read
        events += decoder.feed(stream[i : i + 1])
    assert events == [(b"", b'{"a":\n1}'), (b"x", b"[DONE]")]
    assert SseDecoder().feed(b"data: a\n\ndata: b\n\ndata: c") == [(b"", b"a"), (b"", b"b")]
    tail = SseDecoder()
    tail.feed(b"data: last")
    assert tail.close() == [(b"", b"last")]
    with pytest.raises(SseError):
        SseDecoder().feed(b"<html>oops</html>\n")
    with pytest.raises(SseError):
        SseDecoder().feed(b"data: " + b"x" * (1 << 21))


async def test_the_token_limit_goes_in_the_configured_field(fake: FakeOpenAI) -> None:
    provider = make(fake, token_limit_field="max_completion_tokens")
    await collect(provider.stream(request(stream=False, max_tokens=64)))
    body = fake.requests[0].body
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body


@pytest.mark.parametrize(
    ("kind", "base_url", "configured", "field"),
    [
        ("openai", "https://api.openai.com/v1", None, "max_completion_tokens"),
        # Elsewhere the name the client used (None), as it sent it.
        ("openai", "http://vllm.internal:8000/v1", None, None),
        ("azure", "https://r.openai.azure.com", None, None),
        ("openai", "https://api.openai.com/v1", "max_tokens", "max_tokens"),
        ("openai", "http://vllm.internal:8000/v1", "max_completion_tokens", "max_completion_tokens"),
    ],
)
def test_the_token_limit_field_defaults_by_host(
    kind: str, base_url: str, configured: str | None, field: str | None
) -> None:
    # OpenAI's reasoning models refuse max_tokens; most compatible servers know nothing else.
    cfg = HttpProvider(type=kind, base_url=base_url, token_limit_field=configured)
    assert cfg.token_limit == field


async def test_providers_see_who_calls_and_configured_headers_win(fake: FakeOpenAI) -> None:
    provider = make(fake)
    await collect(provider.stream(request(stream=False)))
    assert fake.requests[-1].headers["User-Agent"] == USER_AGENT and USER_AGENT.startswith("atp/")
    await provider.close()
    # An operator's own User-Agent (a provider that allow-lists clients by it) replaces ATP's.
    named = make(fake, headers={"User-Agent": "acme-gateway/2"})
    await collect(named.stream(request(stream=False)))
    assert fake.requests[-1].headers["User-Agent"] == "acme-gateway/2"
    await named.close()
