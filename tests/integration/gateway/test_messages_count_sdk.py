"""The anthropic SDK's anthropic_sdk.messages.count_tokens against the real gateway and adapters: the count comes
from the provider that would serve the request, which gets count_tokens' own body, and nothing is generated."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import MessageTokensCount
from anthropic.types.shared import ErrorResponse

from tests.fakes.anthropic_checks import counted_tokens
from tests.fakes.base import Faults
from tests.support.dialect_stack import ANTHROPIC_KEY, DialectStack
from tests.support.sdk_models import strict

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI = [{"role": "user", "content": "Hello there, how many tokens is this?"}]
COUNT_PATH = "/v1/messages/count_tokens"


async def test_the_provider_that_would_serve_counts_what_it_would_be_sent(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    raw = await anthropic_sdk.messages.with_raw_response.count_tokens(
        model="claude",
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HI,
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    counted = strict(MessageTokensCount, orjson.loads(raw.http_response.content))
    [sent] = dialects.anthropic.requests
    assert sent.path == COUNT_PATH
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and sent.headers["anthropic-version"]
    # count_tokens' own body: the input and what shapes it, never max_tokens or stream.
    assert set(sent.body) == {"model", "messages", "system", "tools", "tool_choice", "thinking"}
    assert sent.body["model"] == "claude-upstream"
    assert sent.body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent.body["tools"][0]["name"] == "get_weather"
    assert sent.body["thinking"]["type"] == "enabled" and sent.body["thinking"]["budget_tokens"] == 2048
    assert counted.input_tokens == counted_tokens(sent.body) > 0
    assert raw.headers["x-atp-model"] == "claude" and raw.headers["x-atp-decision-id"]


async def test_a_route_counts_at_its_first_candidate_that_can_and_nothing_is_generated(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # The route ranks az first (a static policy); Azure cannot count, so claude's provider does.
    raw = await anthropic_sdk.messages.with_raw_response.count_tokens(model="azure-first", messages=HI)
    assert raw.headers["x-atp-model"] == "claude"
    assert (await raw.parse()).input_tokens == counted_tokens(dialects.anthropic.requests[-1].body)
    assert [r.path for r in dialects.anthropic.requests] == [COUNT_PATH]
    assert not dialects.openai.requests and not dialects.gemini.requests


async def test_a_model_whose_provider_cannot_count_is_refused_by_name(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.count_tokens(model="az", messages=HI)
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.type == "invalid_request_error"
    assert "no candidate of 'az' can count tokens" in error.error.message and "Azure" in error.error.message
    assert not dialects.openai.requests


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"max_tokens": 10}, "max_tokens"),
        ({"stream": True}, "stream"),
        ({"temperature": 0.5}, "temperature"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
    ],
)
async def test_what_count_tokens_does_not_take_is_refused_by_name(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, extra: dict[str, object], path: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.count_tokens(model="claude", messages=HI, extra_body=extra)
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.type == "invalid_request_error" and path in error.error.message
    assert not dialects.anthropic.requests


async def test_keys_versions_and_provider_failures_answer_in_anthropics_shape(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, api_key: str
) -> None:
    body = {"model": "claude", "messages": HI}
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        no_version = await http.post(COUNT_PATH, json=body, headers={"x-api-key": api_key})
        wrong_key = await http.post(
            COUNT_PATH, json=body, headers={"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"}
        )
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    assert strict(ErrorResponse, wrong_key.json()).error.type == "authentication_error"
    dialects.anthropic.faults = Faults(status=429, retry_after="3")
    with pytest.raises(anthropic.RateLimitError) as caught:
        await anthropic_sdk.messages.count_tokens(model="claude", messages=HI)
    assert strict(ErrorResponse, caught.value.body).error.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "3"
