"""Values one provider refuses and another takes, through the real gateway and adapters: a temperature
above 1 (Claude's range ends there, OpenAI's and Gemini's at 2) and a blank stop sequence ("\\n", which
Claude refuses) pass Claude over for the route's next candidate, and a request naming only Claude gets a
400 naming the parameter; nothing is clamped or dropped."""

from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

HI = [{"role": "user", "content": "Say hi."}]


@pytest.mark.parametrize(
    ("option", "sent_as"),
    [({"temperature": 1.5}, ("temperature", 1.5)), ({"stop": ["\n", "END"]}, ("stop", ["\n", "END"]))],
)
async def test_a_value_claude_refuses_goes_to_the_next_candidate_as_sent(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, option: dict, sent_as: tuple
) -> None:
    # claude-first always tries Claude first.
    raw = await openai_sdk.chat.completions.with_raw_response.create(
        model="claude-first", messages=HI, **option
    )
    assert raw.headers["x-atp-model"] == "gpt" and not dialects.anthropic.requests
    [sent] = dialects.openai.requests
    assert sent.body[sent_as[0]] == sent_as[1]


async def test_gemini_takes_both_as_sent(dialects: DialectStack, openai_sdk: openai.AsyncOpenAI) -> None:
    await openai_sdk.chat.completions.create(model="gem", messages=HI, temperature=1.5, stop=["\n"])
    [sent] = dialects.gemini.requests
    assert sent.body["generationConfig"]["temperature"] == 1.5
    assert sent.body["generationConfig"]["stopSequences"] == ["\n"]


@pytest.mark.parametrize(("option", "param"), [({"temperature": 2}, "temperature"), ({"stop": " "}, "stop")])
async def test_only_claude_left_is_a_400_naming_the_parameter(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, option: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="claude", messages=HI, **option)
    assert caught.value.param == param and not dialects.anthropic.requests


async def test_a_messages_clients_blank_stop_sequence_is_refused_for_claude_and_kept_for_others(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.create(
            model="claude", max_tokens=16, messages=HI, stop_sequences=["\n\n"]
        )
    error = strict(ErrorResponse, caught.value.body).error
    assert error.type == "invalid_request_error" and "stop" in error.message
    await anthropic_sdk.messages.create(model="gpt", max_tokens=16, messages=HI, stop_sequences=["\n\n"])
    [sent] = dialects.openai.requests
    assert sent.body["stop"] == ["\n\n"]


async def test_values_claude_takes_still_reach_it(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="claude-first", messages=HI, temperature=1, stop=["END"])
    [sent] = dialects.anthropic.requests
    assert sent.body["temperature"] == 1 and sent.body["stop_sequences"] == ["END"]
