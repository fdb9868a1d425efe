"""A conversation that opens with the assistant's turn (a chatbot's greeting) through the real gateway and
adapters: Claude's APIs refuse one, so Claude's candidates are filtered out and a request naming only Claude
gets a 400 naming `messages` in the client's own dialect; OpenAI and Gemini take it as sent."""

from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic.types.shared import ErrorResponse
from openai.types.chat import ChatCompletionMessageParam

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

GREETED: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "assistant", "content": "Arrr, how may I help ye?"},
    {"role": "user", "content": "Where is the treasure?"},
]


async def test_a_greeting_first_chat_passes_claude_over_for_the_next_candidate(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # claude-first always tries Claude first: the opening assistant turn must pass it over.
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="claude-first", messages=GREETED)
    assert raw.headers["x-atp-model"] == "gpt" and not dialects.anthropic.requests
    [sent] = dialects.openai.requests
    assert [m["role"] for m in sent.body["messages"]] == ["system", "assistant", "user"]
    assert sent.body["messages"][1]["content"] == "Arrr, how may I help ye?"


async def test_gemini_takes_the_greeting_as_the_models_turn(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="gem", messages=GREETED)
    [sent] = dialects.gemini.requests
    assert [c["role"] for c in sent.body["contents"]] == ["model", "user"]


async def test_only_claude_left_is_a_400_naming_messages_in_each_dialect(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        await openai_sdk.chat.completions.create(model="claude", messages=GREETED)
    assert chat.value.param == "messages" and "assistant_first" in chat.value.message
    with pytest.raises(anthropic.BadRequestError) as messages:
        await anthropic_sdk.messages.create(
            model="claude",
            max_tokens=32,
            system="You are a pirate.",
            messages=[{"role": "assistant", "content": "Ahoy!"}, {"role": "user", "content": "Hi"}],
        )
    error = strict(ErrorResponse, messages.value.body).error
    assert error.type == "invalid_request_error" and "assistant_first" in error.message
    assert not dialects.anthropic.requests


async def test_a_user_first_conversation_still_reaches_claude(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="claude-first", messages=[GREETED[0], *GREETED[2:]])
    [sent] = dialects.anthropic.requests
    assert sent.body["messages"][0]["role"] == "user"


async def test_instructions_alone_go_to_openai_and_claude_alone_refuses_them_by_name(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    alone: list[ChatCompletionMessageParam] = [{"role": "system", "content": "Write a haiku about rain."}]
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="claude-first", messages=alone)
    assert raw.headers["x-atp-model"] == "gpt" and not dialects.anthropic.requests
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="gem", messages=alone)
    assert caught.value.param == "messages" and "instructions_only" in caught.value.message
    assert not dialects.gemini.requests
