"""The openai SDK's openai_sdk.responses against the real gateway and adapters, with recording fake providers."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.fakes.anthropic_server import AnthropicExtras
from tests.fakes.base import FakeReply
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


async def _raw(openai_sdk: openai.AsyncOpenAI, **body: Any) -> Response:
    """A non-streamed call whose raw JSON is validated strictly, then parsed by the SDK."""
    raw = await openai_sdk.responses.with_raw_response.create(**body)
    strict(Response, orjson.loads(raw.content))
    return raw.parse()


async def _raw_events(dialects: DialectStack, api_key: str, body: dict[str, Any]) -> list[Any]:
    """A streamed call's events, each validated strictly against the SDK's event union."""
    async with (
        httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/responses",
            json={**body, "stream": True},
            headers={"authorization": f"Bearer {api_key}"},
        ) as reply,
    ):
        assert reply.status_code == 200
        data = b"".join([chunk async for chunk in reply.aiter_bytes()])
    events = []
    for block in data.split(b"\n\n"):
        if block.strip():
            name, payload = block.split(b"\n", 1)
            event = strict(ResponseStreamEvent, orjson.loads(payload.removeprefix(b"data: ")))
            assert name == b"event: " + event.type.encode()
            events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


async def test_plain_input_and_instructions(dialects: DialectStack, openai_sdk: openai.AsyncOpenAI) -> None:
    response = await _raw(
        openai_sdk,
        model="gpt",
        input="Hello there",
        instructions="Be brief.",
        max_output_tokens=50,
        temperature=0.2,
        metadata={"team": "search"},
    )
    sent = dialects.openai.requests[-1].body
    assert sent["model"] == "gpt-upstream"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    assert response.status == "completed" and response.model == "gpt"
    assert response.output_text == dialects.openai.reply.text
    assert response.usage.input_tokens == dialects.openai.reply.prompt_tokens
    assert response.usage.output_tokens == dialects.openai.reply.completion_tokens
    assert response.instructions == "Be brief." and response.metadata == {"team": "search"}


async def test_streamed_with_the_sdk_and_strictly(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, api_key
) -> None:
    stream = await openai_sdk.responses.create(model="claude", input="Hello", stream=True)
    texts, final = [], None
    async for event in stream:
        if event.type == "response.output_text.delta":
            texts.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert "".join(texts) == dialects.anthropic.reply.text
    assert final is not None and final.output_text == dialects.anthropic.reply.text
    assert dialects.anthropic.requests[-1].body["stream"] is True

    events = await _raw_events(dialects, api_key, {"model": "gem", "input": "Hello"})
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1].response.usage.total_tokens > 0


async def test_tools_round_trip_through_anthropic(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    dialects.anthropic.reply.text = ""
    dialects.anthropic.reply.tool_calls = [("get_weather", '{"city":"Paris"}')]
    first = await _raw(
        openai_sdk,
        model="claude",
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    sent = dialects.anthropic.requests[-1].body
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"] == WEATHER["parameters"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris"}

    dialects.anthropic.reply.tool_calls = []
    dialects.anthropic.reply.text = "It is sunny."
    second = await _raw(
        openai_sdk,
        model="claude",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *first.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
        ],
    )
    turns = dialects.anthropic.requests[-1].body["messages"]
    assert turns[1]["role"] == "assistant"
    assert turns[1]["content"][-1] == {
        "type": "tool_use",
        "id": call.call_id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    result = turns[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call.call_id
    assert "sunny, 21C" in orjson.dumps(result["content"]).decode()
    assert second.output_text == "It is sunny."


async def test_streamed_function_call_arguments(dialects: DialectStack, api_key: str) -> None:
    dialects.openai.reply.text = ""
    dialects.openai.reply.tool_calls = [("get_weather", '{"city":"Paris"}')]
    events = await _raw_events(dialects, api_key, {"model": "gpt", "input": "Weather?", "tools": [WEATHER]})
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas == done[0].arguments == '{"city":"Paris"}'
    assert dialects.openai.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"


async def test_text_format_json_schema(dialects: DialectStack, openai_sdk: openai.AsyncOpenAI) -> None:
    dialects.openai.reply.text = '{"answer": 4}'
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response = await _raw(
        openai_sdk,
        model="gpt",
        input="2+2?",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    )
    sent = dialects.openai.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "answer" and sent["json_schema"]["schema"] == schema
    assert orjson.loads(response.output_text) == {"answer": 4}


async def test_reasoning_and_thinking_come_back(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    dialects.anthropic.extras = AnthropicExtras(thinking=("Adding numbers.", "sig-1"))
    response = await _raw(
        openai_sdk,
        model="claude",
        input="2+2?",
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=4000,
    )
    sent = dialects.anthropic.requests[-1].body
    assert sent["thinking"]["type"] == "enabled" and sent["thinking"]["budget_tokens"] >= 1024
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.content[0].text == "Adding numbers." and reasoning.encrypted_content == "sig-1"
    # The reasoning item goes back as a thinking block, signature intact.
    await _raw(
        openai_sdk,
        model="claude",
        input=[
            {"role": "user", "content": "2+2?"},
            *response.output,
            {"role": "user", "content": "And 3+3?"},
        ],
    )
    assistant = dialects.anthropic.requests[-1].body["messages"][1]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "Adding numbers.",
        "signature": "sig-1",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
        ({"temperature": 3}, "temperature"),
    ],
)
async def test_bad_input_is_a_400_naming_the_path(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.create(**{"model": "gpt", "input": "x", **body})
    assert caught.value.param == param
    assert not dialects.openai.requests


async def test_provider_refusals_name_paths_of_the_responses_body(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # Anthropic refuses json_object and a Word file; the errors name where the client put them.
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.create(model="claude", input="x", text={"format": {"type": "json_object"}})
    assert caught.value.param == "text.format"
    word = {"type": "input_file", "file_data": "data:application/msword;base64,QQ==", "filename": "a.doc"}
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.create(
            model="claude",
            instructions="Be brief.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Read this."}, word]}],
        )
    assert caught.value.param == "input[0].content[1]"
    assert "input[0].content[1]" in caught.value.message
    assert not dialects.anthropic.requests


async def test_top_logprobs_alone_asks_for_logprobs(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # Chat Completions refuses top_logprobs without logprobs; the Responses API has no such switch.
    await _raw(openai_sdk, model="gpt", input="Hi", top_logprobs=2)
    [sent] = dialects.openai.requests
    assert (sent.body["logprobs"], sent.body["top_logprobs"]) == (True, 2)


async def test_streamed_items_come_one_after_another(dialects: DialectStack, api_key: str) -> None:
    # OpenAI's own stream ends an item before the next begins; clients that keep one open item rely on it.
    calls = [("get_weather", '{"city":"Rome"}'), ("get_weather", '{"city":"Oslo"}')]
    dialects.anthropic.reply = FakeReply(text="Checking both.", tool_calls=calls)
    body = {"model": "claude", "input": "Weather in Rome and Oslo?", "tools": [WEATHER]}
    events = await _raw_events(dialects, api_key, body)
    opened: list[int] = []
    for event in events:
        if event.type == "response.output_item.added":
            assert not opened, "an item began before the one before it was done"
            opened.append(event.output_index)
        elif event.type == "response.output_item.done":
            assert opened == [event.output_index]
            opened.clear()
    done = events[-1].response
    assert [(item.type, getattr(item, "arguments", None)) for item in done.output] == [
        ("message", None),
        ("function_call", '{"city":"Rome"}'),
        ("function_call", '{"city":"Oslo"}'),
    ]


async def test_a_grammar_tool_reaches_chat_completions_in_its_terms(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # Codex's apply_patch: a custom tool with a Lark grammar, forced by name.
    grammar = {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}
    patch = {"type": "custom", "name": "apply_patch", "description": "Edit files", "format": grammar}
    reply = await _raw(
        openai_sdk,
        model="gpt",
        input="Fix it",
        tools=[patch],
        tool_choice={"type": "custom", "name": "apply_patch"},
    )
    [sent] = dialects.openai.requests
    assert sent.body["tools"] == [
        {
            "type": "custom",
            "custom": {
                "name": "apply_patch",
                "description": "Edit files",
                "format": {"type": "grammar", "grammar": {"definition": "start: /.+/", "syntax": "lark"}},
            },
        }
    ]
    assert sent.body["tool_choice"] == {"type": "custom", "custom": {"name": "apply_patch"}}
    # The Response repeats the tool as the client sent it.
    assert reply.tools[0].model_dump(exclude_none=True)["format"] == grammar
