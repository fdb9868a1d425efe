"""Every typed request field to Messages API terms and every reply block back, against the checking fake."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.pricing import Prices
from atp_adapters.providers import AnthropicProvider, ProviderError, ProviderRequest
from atp_adapters.providers.anthropic_encode import EFFORT_BUDGETS
from atp_common.config import HttpProvider, ModelConfig
from tests.fakes import FakeAnthropic, FakeReply, running_fake_anthropic
from tests.fakes.anthropic_server import AnthropicExtras
from tests.support.full_reply import collect_full
from tests.support.sdk_models import strict

PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
EPHEMERAL = chat_pb2.CacheControl(type="ephemeral", ttl="1h")
Part = chat_pb2.ContentPart
HI = [chat_pb2.ChatMessage(role="user", content="hi")]
THINK = chat_pb2.Reasoning(budget_tokens=2000)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with running_fake_anthropic() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    client = AnthropicProvider(
        HttpProvider(type="anthropic", base_url=fake.base_url), api_key="k", name="claude"
    )
    yield client
    await client.close()


def conversation() -> list[chat_pb2.ChatMessage]:
    """A conversation using every part kind Messages takes."""
    call = chat_pb2.ToolCall(
        id="toolu_1", type="function", function_name="weather", arguments='{"city":"Rome"}'
    )
    call2 = chat_pb2.ToolCall(id="toolu_2", type="function", function_name="weather", arguments="")
    return [
        chat_pb2.ChatMessage(role="system", content="be brief"),
        chat_pb2.ChatMessage(
            role="developer", parts=[Part(text="house rules", cache_control=EPHEMERAL), Part(text="more")]
        ),
        chat_pb2.ChatMessage(
            role="user",
            parts=[
                Part(text="look", cache_control=chat_pb2.CacheControl(type="explicit")),
                Part(image=chat_pb2.ImageContent(url=PNG, detail="high")),
                Part(image=chat_pb2.ImageContent(url="https://img.example/cat.jpg")),
                Part(
                    file=chat_pb2.FileContent(
                        file_data=PDF,
                        media_type="application/pdf",
                        filename="a.pdf",
                        context="c",
                        citations=True,
                    )
                ),
                Part(file=chat_pb2.FileContent(url="https://docs.example/b.pdf", title="B")),
                Part(
                    file=chat_pb2.FileContent(
                        file_data="data:text/plain;base64," + base64.b64encode(b"hi").decode()
                    )
                ),
            ],
        ),
        chat_pb2.ChatMessage(
            role="assistant",
            parts=[
                Part(thinking=chat_pb2.ThinkingContent(thinking="hmm", signature="sig1")),
                Part(thinking=chat_pb2.ThinkingContent(redacted_data="opaque")),
                Part(text="Checking."),
                Part(refusal="not that part"),
            ],
            tool_calls=[call, call2],
        ),
        chat_pb2.ChatMessage(role="tool", tool_call_id="toolu_1", content="sunny"),
        chat_pb2.ChatMessage(
            role="tool",
            tool_call_id="toolu_2",
            is_error=True,
            parts=[Part(text="failed"), Part(image=chat_pb2.ImageContent(url=PNG))],
        ),
        chat_pb2.ChatMessage(role="user", content="and now?"),
    ]


def every_param() -> chat_pb2.GenerationParams:
    return chat_pb2.GenerationParams(
        max_tokens=500,
        temperature=1.0,
        stop=["END"],
        safety_identifier="user-hash",
        service_tier="default",
        tools=[
            chat_pb2.Tool(
                type="function",
                name="weather",
                parameters_json=b'{"type":"object","properties":{"city":{"type":"string"}}}',
                strict=True,
                cache_control=chat_pb2.CacheControl(type="ephemeral"),
            )
        ],
        tool_choice=chat_pb2.ToolChoice(mode="auto"),
        parallel_tool_calls=False,
        reasoning=chat_pb2.Reasoning(effort="high", include_thoughts=True, display="summarized"),
        response_format=chat_pb2.ResponseFormat(
            type="json_schema", name="w", schema_json=b'{"type":"object"}'
        ),
        cache_control=chat_pb2.CacheControl(type="ephemeral"),
    )


async def sent_body(fake: FakeAnthropic, provider: AnthropicProvider) -> dict:
    """The body of the request with every field; the fake checked it as Messages does and answered 200."""
    request = ProviderRequest("claude-x", conversation(), every_param(), stream=False)
    await collect_full(provider.stream(request))
    return fake.requests[0].body


async def test_every_message_part_in_messages_terms(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    body = await sent_body(fake, provider)
    assert body["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": "house rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "more"},
    ]
    user, assistant, results = body["messages"]
    assert user["content"] == [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "a.pdf",
            "context": "c",
            "citations": {"enabled": True},
        },
        {"type": "document", "source": {"type": "url", "url": "https://docs.example/b.pdf"}, "title": "B"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}},
    ]
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Checking."},
        {"type": "text", "text": "not that part"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Rome"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}},
    ]
    # Both results and the next user message share one user turn, results first.
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": [
                    {"type": "text", "text": "failed"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                ],
                "is_error": True,
            },
            {"type": "text", "text": "and now?"},
        ],
    }


async def test_every_parameter_in_messages_terms(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    body = await sent_body(fake, provider)
    assert body["tools"] == [
        {
            "name": "weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    budget = EFFORT_BUDGETS["high"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget, "display": "summarized"}
    assert body["max_tokens"] == budget + 500  # raised above the budget: Messages requires it
    assert body["temperature"] == 1.0 and body["stop_sequences"] == ["END"]
    assert body["service_tier"] == "standard_only"
    assert body["metadata"] == {"user_id": "user-hash"}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert body["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (chat_pb2.ToolChoice(mode="function", name="weather"), None, {"type": "tool", "name": "weather"}),
        (chat_pb2.ToolChoice(mode="required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (chat_pb2.ToolChoice(mode="none"), False, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (chat_pb2.ToolChoice(mode="auto"), True, {"type": "auto"}),
    ],
)
async def test_tool_choice_top_k_and_service_tier(
    fake: FakeAnthropic, provider: AnthropicProvider, choice, parallel, expected
) -> None:
    tool = chat_pb2.Tool(type="function", name="weather")
    params = chat_pb2.GenerationParams(tools=[tool], top_k=40, service_tier="auto")
    if choice is not None:
        params.tool_choice.CopyFrom(choice)
    if parallel is not None:
        params.parallel_tool_calls = parallel
    messages = [chat_pb2.ChatMessage(role="user", content="hi")]
    await collect_full(provider.stream(ProviderRequest("claude-x", messages, params, stream=False)))
    body = fake.requests[0].body
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"name": "weather", "input_schema": {"type": "object", "properties": {}}}]
    assert body["top_k"] == 40 and body["service_tier"] == "auto"


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "thinking", "limit"),
    [
        (
            chat_pb2.Reasoning(effort="low"),
            None,
            {"type": "enabled", "budget_tokens": 2048, "display": "omitted"},
            2048 + 4096,
        ),
        (
            chat_pb2.Reasoning(budget_tokens=3000),
            8000,
            {"type": "enabled", "budget_tokens": 3000, "display": "omitted"},
            8000,
        ),
        (
            chat_pb2.Reasoning(budget_tokens=3000),
            3000,
            {"type": "enabled", "budget_tokens": 3000, "display": "omitted"},
            6000,
        ),
        (chat_pb2.Reasoning(disabled=True), 100, {"type": "disabled"}, 100),
        (chat_pb2.Reasoning(effort="none"), None, {"type": "disabled"}, 4096),
    ],
)
async def test_reasoning_becomes_thinking(
    fake: FakeAnthropic, provider: AnthropicProvider, reasoning, max_tokens, thinking, limit
) -> None:
    params = chat_pb2.GenerationParams(reasoning=reasoning, user="u1")
    if max_tokens is not None:
        params.max_tokens = max_tokens
    messages = [chat_pb2.ChatMessage(role="user", content="think")]
    await collect_full(provider.stream(ProviderRequest("claude-x", messages, params, stream=False)))
    body = fake.requests[0].body
    assert body["thinking"] == thinking and body["max_tokens"] == limit
    assert body["metadata"] == {"user_id": "u1"}


def _with(part: chat_pb2.ContentPart, role: str = "user") -> list[chat_pb2.ChatMessage]:
    return [
        chat_pb2.ChatMessage(role="user", content="hi"),
        chat_pb2.ChatMessage(role=role, parts=[Part(text="a"), part]),
    ]


async def test_an_openai_breakpoint_lifetime_is_the_claude_lifetime_that_keeps_it(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    # OpenAI's ttl is a minimum: 30 minutes is kept by Claude's 1h (its 5m would not keep it).
    hint = chat_pb2.CacheControl(type="explicit", ttl="30m")
    message = chat_pb2.ChatMessage(role="user", parts=[chat_pb2.ContentPart(text="hi", cache_control=hint)])
    await collect_full(provider.stream(ProviderRequest("claude-x", [message], chat_pb2.GenerationParams())))
    block = fake.requests[0].body["messages"][0]["content"][0]
    assert block["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


@pytest.mark.parametrize(
    ("messages", "params", "path"),
    [
        (_with(Part(audio=chat_pb2.AudioContent(data="AAA=", format="wav"))), {}, "messages[1].content[1]"),
        (_with(Part(file=chat_pb2.FileContent(file_id="file-1"))), {}, "messages[1].content[1]"),
        (
            _with(Part(file=chat_pb2.FileContent(file_data="QUJD", media_type="image/tiff"))),
            {},
            "messages[1].content[1]",
        ),
        (_with(Part(image=chat_pb2.ImageContent(url="ftp://x/y.png"))), {}, "messages[1].content[1]"),
        (
            _with(Part(thinking=chat_pb2.ThinkingContent(thinking="t", signature="s"))),
            {},
            "messages[1].content[1]",
        ),
        (_with(Part(image=chat_pb2.ImageContent(url=PNG)), role="system"), {}, "messages[1].content[1]"),
        ([chat_pb2.ChatMessage(role="user", content="hi", name="ann")], {}, "messages[0].name"),
        (
            [
                chat_pb2.ChatMessage(role="user", content="hi"),
                chat_pb2.ChatMessage(
                    role="assistant", tool_calls=[chat_pb2.ToolCall(id="c", type="custom", function_name="f")]
                ),
            ],
            {},
            "messages[1].tool_calls[0]",
        ),
        (
            [chat_pb2.ChatMessage(role="user", content="hi")],
            {"tools": [chat_pb2.Tool(type="custom", name="g")]},
            "tools[0]",
        ),
        (
            [chat_pb2.ChatMessage(role="user", content="hi")],
            {"tool_choice": chat_pb2.ToolChoice(mode="allowed_tools", allowed=["f"])},
            "tool_choice",
        ),
        (
            [chat_pb2.ChatMessage(role="user", content="hi")],
            {"reasoning": chat_pb2.Reasoning(effort="ultra")},
            "reasoning_effort",
        ),
        (HI, {"reasoning": THINK, "temperature": 0.5}, "temperature"),
        (HI, {"frequency_penalty": 0.5}, "frequency_penalty"),
        (HI, {"cache_control": chat_pb2.CacheControl(type="explicit", ttl="24h")}, "cache_control"),
        (HI, {"cache_control": chat_pb2.CacheControl(type="explicit", ttl="12h")}, "cache_control"),
        (HI, {"top_logprobs": 2}, "top_logprobs"),
        (HI, {"reasoning": THINK, "top_k": 5}, "top_k"),
        (HI, {"reasoning": THINK, "tool_choice": chat_pb2.ToolChoice(mode="required")}, "tool_choice"),
    ],
)
async def test_what_messages_cannot_express_is_refused_by_path(
    fake: FakeAnthropic, provider: AnthropicProvider, messages, params, path: str
) -> None:
    request = ProviderRequest("claude-x", messages, chat_pb2.GenerationParams(**params))
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(request))
    assert info.value.kind == "unsupported" and info.value.param == path
    assert info.value.to_atp().param == path
    assert fake.requests == []


@pytest.mark.parametrize("stream", [True, False])
async def test_thinking_citations_and_metadata_reach_the_reply(
    fake: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    citation = {
        "type": "char_location",
        "cited_text": "Rome is sunny",
        "document_index": 0,
        "document_title": "Forecast",
        "start_char_index": 0,
        "end_char_index": 13,
    }
    web = {
        "type": "web_search_result_location",
        "cited_text": "warm",
        "url": "https://w.example",
        "title": "W",
    }
    fake.reply = FakeReply(
        text="Sunny in Rome.",
        tool_calls=[("weather", '{"city":"Rome"}')],
        cache_write_tokens=4,
        completion_tokens=9,
        reasoning_tokens=6,
    )
    fake.extras = AnthropicExtras(
        thinking=("Let me see.", "sig-9"), redacted_thinking="xyz", citations=[citation, web]
    )
    messages = [chat_pb2.ChatMessage(role="user", content="weather?")]
    reply = await collect_full(
        provider.stream(ProviderRequest("claude-x", messages, chat_pb2.GenerationParams(), stream=stream))
    )
    choice = reply.first
    assert choice.thinking == [("Let me see.", "sig-9")] and choice.redacted == ["xyz"]
    assert choice.text == "Sunny in Rome."
    end = len("Sunny in Rome.")
    assert list(choice.annotations) == [
        chat_pb2.Annotation(
            type="char_location",
            title="Forecast",
            end_index=end,
            cited_text="Rome is sunny",
            anthropic_json=orjson.dumps(citation),
        ),
        chat_pb2.Annotation(
            type="web_search_result_location",
            url="https://w.example",
            title="W",
            end_index=end,
            cited_text="warm",
            anthropic_json=orjson.dumps(web),
        ),
    ]
    assert choice.tool_calls == {0: ["toolu_0", "weather", '{"city":"Rome"}']}
    assert reply.finish_reason == "tool_calls" and reply.response_id == "msg_fake"
    assert reply.service_tier == "default"  # Anthropic's "standard", in the internal vocabulary
    assert reply.usage is not None and reply.usage.cache_write_tokens == 4
    assert (reply.usage.completion_tokens, reply.usage.reasoning_tokens) == (9, 6)


@pytest.mark.parametrize("stream", [True, False])
async def test_refusal_and_stop_sequence(
    fake: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    messages = [chat_pb2.ChatMessage(role="user", content="hi")]
    request = ProviderRequest("claude-x", messages, chat_pb2.GenerationParams(stop=["##"]), stream=stream)
    fake.reply = FakeReply(text="I won't")
    fake.extras = AnthropicExtras(refusal="policy: cyber")
    reply = await collect_full(provider.stream(request))
    assert reply.finish_reason == "content_filter" and reply.first.refusal == "policy: cyber"
    fake.extras = AnthropicExtras(stop_sequence="##")
    reply = await collect_full(provider.stream(request))
    assert reply.finish_reason == "stop" and reply.stop_sequence == "##"


async def test_the_fake_refuses_what_messages_refuses(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    # A tool result whose call is not in the previous turn: Messages answers 400, so does the fake.
    messages = [
        chat_pb2.ChatMessage(role="user", content="hi"),
        chat_pb2.ChatMessage(role="tool", tool_call_id="toolu_missing", content="x"),
    ]
    with pytest.raises(ProviderError) as info:
        await collect_full(
            provider.stream(ProviderRequest("claude-x", messages, chat_pb2.GenerationParams()))
        )
    assert info.value.status == 400 and "tool_use_id" in info.value.message
    assert info.value.is_request_fault


def test_cache_writes_are_billed_at_the_cache_write_price() -> None:
    prices = Prices.of(
        ModelConfig(
            provider="claude",
            input_usd_per_mtok=3,
            cached_input_usd_per_mtok=0.3,
            cache_write_usd_per_mtok=3.75,
            output_usd_per_mtok=15,
        )
    )
    usage = chat_pb2.Usage(
        prompt_tokens=1000, cached_prompt_tokens=200, cache_write_tokens=300, completion_tokens=10
    )
    assert prices.cost(usage) == pytest.approx((500 * 3 + 200 * 0.3 + 300 * 3.75 + 10 * 15) / 1e6)


async def test_tool_results_lead_their_user_turn(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    call = chat_pb2.ToolCall(id="toolu_1", type="function", function_name="weather", arguments="{}")
    messages = [
        chat_pb2.ChatMessage(role="user", content="weather?"),
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="user", content="quickly please"),
        chat_pb2.ChatMessage(role="tool", tool_call_id="toolu_1", content="sunny"),
    ]
    await collect_full(provider.stream(ProviderRequest("claude-x", messages, chat_pb2.GenerationParams())))
    # Messages wants tool results first in their turn (the fake answers 400 otherwise, as Messages does).
    assert fake.requests[0].body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "text", "text": "quickly please"},
        ],
    }
    # A conversation that leaves a tool call unanswered is Messages' 400, passed on as it says it.
    with pytest.raises(ProviderError) as info:
        await collect_full(
            provider.stream(ProviderRequest("claude-x", messages[:3], chat_pb2.GenerationParams()))
        )
    assert info.value.status == 400 and "without `tool_result`" in info.value.message


async def test_more_cache_hints_than_messages_takes_are_refused_by_path(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    hint = chat_pb2.CacheControl(type="ephemeral")
    messages = [
        chat_pb2.ChatMessage(role="user", parts=[Part(text=f"t{j}", cache_control=hint) for j in range(4)])
    ]
    params = chat_pb2.GenerationParams(cache_control=hint)
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(ProviderRequest("claude-x", messages, params)))
    assert info.value.param == "cache_control" and fake.requests == []
    messages[0].parts.add(text="t4", cache_control=hint)
    with pytest.raises(ProviderError) as info:
        await collect_full(
            provider.stream(ProviderRequest("claude-x", messages, chat_pb2.GenerationParams()))
        )
    assert info.value.param == "messages[0].content[4].cache_control" and fake.requests == []


async def test_defaults_ask_nothing_of_messages(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    # Values routing counts as defaults (zero penalties, no logprobs, one choice, no store) pass unsent.
    params = chat_pb2.GenerationParams(
        presence_penalty=0,
        frequency_penalty=0,
        logprobs=False,
        top_logprobs=0,
        n=1,
        store=False,
        modalities=["text"],
    )
    await collect_full(provider.stream(ProviderRequest("claude-x", HI, params, stream=False)))
    body = fake.requests[0].body
    assert set(body) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize("stream", [True, False])
async def test_the_fakes_replies_are_what_the_anthropic_sdk_reads(fake: FakeAnthropic, stream: bool) -> None:
    # The fake's thinking, citations, tool use and refusal replies, held strictly to the SDK's own models.
    fake.reply = FakeReply(text="Sunny.", tool_calls=[("weather", '{"city":"Rome"}')], reasoning_tokens=2)
    citation = {
        "type": "char_location",
        "cited_text": "x",
        "document_index": 0,
        "document_title": None,
        "start_char_index": 0,
        "end_char_index": 1,
        "file_id": None,
    }
    fake.extras = AnthropicExtras(
        thinking=("hm", "sig"), redacted_thinking="r", citations=[citation], refusal="no"
    )
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/v1/messages", json=body) as response,
    ):
        raw = await response.read()
    if not stream:
        strict(anthropic.types.Message, orjson.loads(raw))
        return
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    for data in events:
        event = orjson.loads(data)
        if event["type"] != "ping":  # keepalives, which the SDK skips
            strict(anthropic.types.RawMessageStreamEvent, event)
