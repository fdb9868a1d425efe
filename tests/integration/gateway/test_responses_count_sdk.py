"""The openai SDK's openai_sdk.responses.input_tokens.count against the real gateway and adapters: each provider
that can count gets its own count body (OpenAI's, Anthropic's, Gemini's), checked by its fake as the real
service checks it, and nothing is generated."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from openai.types.responses.input_token_count_response import InputTokenCountResponse

from tests.fakes.anthropic_checks import counted_tokens
from tests.fakes.gemini_checks import counted_gemini_tokens
from tests.fakes.openai_checks import counted_openai_tokens
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
CONVERSATION: list[Any] = [
    {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
    {"role": "assistant", "content": "It is 18C and sunny."},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "And what is in this picture?"},
            {"type": "input_image", "image_url": PIXEL, "detail": "low"},
        ],
    },
]
COUNT_PATH = "/v1/responses/input_tokens"


async def _count(openai_sdk: openai.AsyncOpenAI, **body: Any) -> tuple[InputTokenCountResponse, Any]:
    raw = await openai_sdk.responses.input_tokens.with_raw_response.count(**body)
    return strict(InputTokenCountResponse, orjson.loads(raw.content)), raw.headers


async def test_openai_counts_the_conversation_as_responses_input_items(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    counted, headers = await _count(
        openai_sdk,
        model="gpt",
        instructions="Answer briefly.",
        input=CONVERSATION,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        reasoning={"effort": "low"},
        text={"format": {"type": "json_object"}, "verbosity": "low"},
    )
    [sent] = dialects.openai.requests
    assert sent.path == COUNT_PATH  # the fake checked the body against the SDK's InputTokenCountParams
    body = sent.body
    assert body["model"] == "gpt-upstream" and counted.input_tokens == counted_openai_tokens(body) > 0
    assert body["input"][0] == {"type": "message", "role": "system", "content": "Answer briefly."}
    answer = {"type": "message", "role": "assistant", "content": "It is 18C and sunny."}
    assert body["input"][2:5] == [*CONVERSATION[1:3], answer]
    assert body["input"][5]["content"][1] == {"type": "input_image", "image_url": PIXEL, "detail": "low"}
    assert body["tools"] == [WEATHER]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert (body["parallel_tool_calls"], body["reasoning"]) == (False, {"effort": "low"})
    assert body["text"] == {"format": {"type": "json_object"}, "verbosity": "low"}
    assert headers["x-atp-model"] == "gpt" and headers["x-atp-decision-id"]
    assert not [r for r in dialects.openai.requests if r.path != COUNT_PATH]


async def test_anthropic_and_gemini_count_in_their_own_terms(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    claude, _ = await _count(openai_sdk, model="claude", input=CONVERSATION, tools=[WEATHER])
    [to_anthropic] = dialects.anthropic.requests
    assert to_anthropic.path == "/v1/messages/count_tokens"
    assert claude.input_tokens == counted_tokens(to_anthropic.body)
    assert to_anthropic.body["tools"][0]["name"] == "get_weather"
    gem, _ = await _count(openai_sdk, model="gem", instructions="Be brief.", input="Hello there")
    [to_gemini] = dialects.gemini.requests
    assert to_gemini.path == "/v1beta/models/gemini-upstream:countTokens"
    inner = to_gemini.body["generateContentRequest"]
    assert inner["model"] == "models/gemini-upstream"
    assert inner["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert gem.input_tokens == counted_gemini_tokens(inner)


async def test_a_candidate_that_cannot_count_is_passed_over_or_named(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    _, headers = await _count(openai_sdk, model="azure-first", input="Hi")
    assert headers["x-atp-model"] == "claude" and not dialects.openai.requests
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.input_tokens.count(model="az", input="Hi")
    error = caught.value.body
    assert "no candidate of 'az' can count tokens" in error["message"] and error["param"] == "model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_output_tokens": 10}, "max_output_tokens"),
        ({"stream": True}, "stream"),
        ({"personality": "friendly"}, "personality"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"truncation": "auto"}, "truncation"),
        ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_video"}]}]}, "input[0]"),
    ],
)
async def test_what_the_count_does_not_take_is_refused_by_name(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "gpt", "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.post("/responses/input_tokens", body=body, cast_to=InputTokenCountResponse)
    assert caught.value.body["param"].startswith(param)
    assert not dialects.openai.requests
