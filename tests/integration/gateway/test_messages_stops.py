"""How Claude's reply ended, as the anthropic SDK reads it through the gateway: stop reasons and details,
and the reply fields ATP's typed reply has no place for (a container, newer usage fields)."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest
from anthropic.types import Message

from tests.fakes.anthropic_server import AnthropicExtras
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import anthropic_message

HI = [{"role": "user", "content": "Hello there"}]


async def _reply(sdk: anthropic.AsyncAnthropic, stream: bool) -> Message:
    return await anthropic_message(sdk, stream, model="claude", max_tokens=64, messages=HI)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refusals_category_and_explanation_reach_the_client(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, stream: bool
) -> None:
    dialects.anthropic.extras = AnthropicExtras(refusal="Not that.", refusal_category="cyber")
    message = await _reply(anthropic_sdk, stream)
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None
    assert (message.stop_details.type, message.stop_details.category) == ("refusal", "cyber")
    assert message.stop_details.explanation == "Not that."


@pytest.mark.parametrize("stream", [False, True])
async def test_a_full_context_window_is_said_as_claude_says_it(
    dialects: DialectStack,
    anthropic_sdk: anthropic.AsyncAnthropic,
    openai_sdk: openai.AsyncOpenAI,
    stream: bool,
) -> None:
    dialects.anthropic.extras = AnthropicExtras(stop_reason="model_context_window_exceeded")
    message = await _reply(anthropic_sdk, stream)
    # Before, it came back as max_tokens: the client could not tell a full window from its own limit.
    assert message.stop_reason == "model_context_window_exceeded" and message.stop_details is None
    # A Chat Completions client gets OpenAI's word for it.
    completion = await openai_sdk.chat.completions.create(model="claude", messages=HI)
    assert completion.choices[0].finish_reason == "length"


async def test_an_ordinary_end_carries_no_stop_details(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    dialects.anthropic.extras = AnthropicExtras()
    raw = await anthropic_sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert body["stop_reason"] == "end_turn" and "stop_details" not in body


async def test_fields_atp_does_not_model_reach_the_client_as_claude_sent_them(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    container = {"id": "container_1", "expires_at": "2026-12-06T10:00:00Z"}
    dialects.anthropic.extras = AnthropicExtras(container=container, usage={"future_tokens": 7})
    raw = await anthropic_sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert body["container"] == container and body["usage"]["future_tokens"] == 7
    # Streamed, the container comes in message_delta's delta, where the SDK's stream helper reads it.
    message = await _reply(anthropic_sdk, stream=True)
    assert message.container is not None and message.container.id == "container_1"
