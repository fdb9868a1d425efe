"""The anthropic SDK's anthropic_sdk.messages against the real gateway and adapters, with recording fake providers."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse

from tests.fakes.anthropic_server import AnthropicExtras
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI = [{"role": "user", "content": "Hello there"}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def _create(anthropic_sdk: anthropic.AsyncAnthropic, **body: Any) -> Message:
    """A non-streamed call whose raw JSON is validated strictly, then parsed by the SDK."""
    body.setdefault("max_tokens", 256)
    raw = await anthropic_sdk.messages.with_raw_response.create(**body)
    strict(Message, orjson.loads(raw.http_response.content))
    return await raw.parse()


async def _post(dialects: DialectStack, api_key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        return await http.post("/v1/messages", json=body, headers={"x-api-key": api_key, **headers})


async def test_plain_message_with_system_blocks(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    message = await _create(
        anthropic_sdk,
        model="claude",
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HI,
        stop_sequences=["STOP"],
        metadata={"user_id": "user-7"},
        # The SDK's typed params no longer list the sampling parameters the API still takes.
        extra_body={"temperature": 0.5, "top_k": 20},
    )
    sent = dialects.anthropic.requests[-1].body
    assert sent["model"] == "claude-upstream"
    assert sent["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"][0]["role"] == "user"
    assert "Hello there" in orjson.dumps(sent["messages"][0]["content"]).decode()
    assert (sent["temperature"], sent["top_k"], sent["stop_sequences"]) == (0.5, 20, ["STOP"])
    assert sent["metadata"] == {"user_id": "user-7"}
    assert message.content[0].type == "text" and message.content[0].text == dialects.anthropic.reply.text
    assert message.stop_reason == "end_turn" and message.model == "claude"
    assert message.usage.output_tokens == dialects.anthropic.reply.completion_tokens


async def test_any_provider_serves_the_messages_api(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    message = await _create(anthropic_sdk, model="gpt", system="Be brief.", messages=HI, max_tokens=64)
    sent = dialects.openai.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert sent["max_tokens"] == 64
    assert message.content[0].text == dialects.openai.reply.text
    gemini = await _create(anthropic_sdk, model="gem", messages=HI)
    assert gemini.content[0].text == dialects.gemini.reply.text


async def test_stream_with_the_sdk_and_strictly(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, api_key
) -> None:
    async with anthropic_sdk.messages.stream(model="gpt", max_tokens=100, messages=HI) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == dialects.openai.reply.text == final.content[0].text
    assert (
        final.stop_reason == "end_turn"
        and final.usage.output_tokens == dialects.openai.reply.completion_tokens
    )
    assert dialects.openai.requests[-1].body["stream"] is True

    reply = await _post(
        dialects,
        api_key,
        {"model": "claude", "max_tokens": 50, "messages": HI, "stream": True},
        **{"anthropic-version": "2023-06-01"},
    )
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in reply.content.split(b"\n\n"):
        if block.strip():
            name, payload = block.split(b"\n", 1)
            event = strict(RawMessageStreamEvent, orjson.loads(payload.removeprefix(b"data: ")))
            assert name == b"event: " + event.type.encode()
            events.append(event)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


async def test_tools_and_tool_results(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    dialects.openai.reply.text = ""
    dialects.openai.reply.tool_calls = [("get_weather", '{"city":"Paris"}')]
    message = await _create(
        anthropic_sdk,
        model="gpt",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    sent = dialects.openai.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert message.stop_reason == "tool_use"
    use = message.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}

    dialects.openai.reply.tool_calls = []
    dialects.openai.reply.text = "Sunny."
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": message.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}],
        },
    ]
    await _create(anthropic_sdk, model="gpt", messages=history, tools=[WEATHER])
    turns = dialects.openai.requests[-1].body["messages"]
    assert turns[1]["tool_calls"][0]["id"] == use.id
    assert orjson.loads(turns[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert turns[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21C"}


async def test_streamed_tool_use(dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic) -> None:
    dialects.gemini.reply.text = ""
    dialects.gemini.reply.tool_calls = [("get_weather", '{"city":"Oslo"}')]
    async with anthropic_sdk.messages.stream(
        model="gem", max_tokens=100, messages=HI, tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_message()
    use = final.content[-1]
    assert use.type == "tool_use" and use.input == {"city": "Oslo"} and final.stop_reason == "tool_use"


async def test_images_and_thinking_through_anthropic(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    dialects.anthropic.extras = AnthropicExtras(thinking=("Looking at the pixel.", "sig-9"))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    message = await _create(
        anthropic_sdk,
        model="claude",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}],
    )
    sent = dialects.anthropic.requests[-1].body
    assert sent["thinking"]["type"] == "enabled" and sent["thinking"]["budget_tokens"] == 2048
    assert sent["messages"][0]["content"][0] == image
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Looking at the pixel."
    assert thinking.signature == "sig-9"


async def test_bearer_auth_and_anthropic_version(dialects: DialectStack, api_key: str) -> None:
    bearer = anthropic.AsyncAnthropic(
        base_url=dialects.base_url, auth_token=api_key, max_retries=0, timeout=10
    )
    try:
        message = await bearer.messages.create(model="gpt", max_tokens=10, messages=HI)
    finally:
        await bearer.close()
    assert message.content[0].text == dialects.openai.reply.text
    missing = await _post(dialects, api_key, {"model": "gpt", "max_tokens": 10, "messages": HI})
    assert missing.status_code == 400
    error = strict(ErrorResponse, missing.json())
    assert error.error.type == "invalid_request_error" and "anthropic-version" in error.error.message
    wrong_key = await _post(
        dialects,
        "sk-wrong",
        {"model": "gpt", "max_tokens": 10, "messages": HI},
        **{"anthropic-version": "2023-06-01"},
    )
    assert (
        wrong_key.status_code == 401
        and strict(ErrorResponse, wrong_key.json()).error.type == "authentication_error"
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
        ({"temperature": 2}, "temperature"),
    ],
)
async def test_bad_input_is_an_invalid_request_error(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, body: dict[str, Any], path: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.create(model="claude", max_tokens=100, messages=HI, extra_body=body)
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.type == "invalid_request_error" and path in error.error.message
    assert not dialects.anthropic.requests


async def test_unknown_model_is_not_found(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await anthropic_sdk.messages.create(model="no-such-model", max_tokens=10, messages=HI)
    assert strict(ErrorResponse, caught.value.body).error.type == "not_found_error"


async def test_routing_refusals_name_paths_of_the_messages_body(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # Gemini cannot keep tool calls sequential; the error names the field the client set.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.create(
            model="gem",
            max_tokens=100,
            messages=HI,
            tools=[WEATHER],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        )
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.message.startswith("tool_choice.disable_parallel_tool_use: ")
    assert not dialects.gemini.requests
