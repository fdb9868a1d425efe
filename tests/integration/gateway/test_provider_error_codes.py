"""What a provider said was wrong with a request reaches the client in its own dialect: a prompt too long
for the context window (however the provider put it) and OpenAI's own error codes, through the SDKs."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.fakes.base import Faults
from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Hello there"}]
# Each provider's own words for a prompt over its window, as its API says them.
TOO_LONG = {
    "gpt": Faults(
        status=400,
        error_message="This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130211 tokens. Please reduce the length of the messages.",
        error_code="context_length_exceeded",
    ),
    "claude": Faults(status=400, error_message="prompt is too long: 208721 tokens > 200000 maximum"),
    "gem": Faults(
        status=400,
        error_message="The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
    ),
}


def _fake(dialects: DialectStack, model: str) -> object:
    return {"gpt": dialects.openai, "claude": dialects.anthropic, "gem": dialects.gemini}[model]


@pytest.mark.parametrize("model", sorted(TOO_LONG))
async def test_a_prompt_too_long_is_openais_context_length_exceeded(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, model: str
) -> None:
    _fake(dialects, model).faults = TOO_LONG[model]
    with pytest.raises(openai.BadRequestError) as chat:
        await openai_sdk.chat.completions.create(model=model, messages=HI)
    assert (chat.value.code, chat.value.param) == ("context_length_exceeded", "messages")
    with pytest.raises(openai.BadRequestError) as responses:
        await openai_sdk.responses.create(model=model, input="Hello there")
    assert (responses.value.code, responses.value.param) == ("context_length_exceeded", "input")


@pytest.mark.parametrize("model", sorted(TOO_LONG))
async def test_a_prompt_too_long_is_said_in_claudes_words_to_messages_clients(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, model: str
) -> None:
    _fake(dialects, model).faults = TOO_LONG[model]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.create(model=model, max_tokens=64, messages=HI)
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].count("prompt is too long") == 1


async def test_openais_own_code_for_a_request_fault_reaches_the_client(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    dialects.openai.faults = Faults(
        status=400,
        error_message="Invalid 'messages[0].content': string too long.",
        error_code="string_above_max_length",
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="gpt", messages=HI)
    assert caught.value.code == "string_above_max_length"
    assert "string too long" in caught.value.message


async def test_a_window_no_candidate_has_is_refused_before_any_call(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    huge = [{"role": "user", "content": "word " * 180_000}]
    with pytest.raises(openai.BadRequestError) as chat:
        await openai_sdk.chat.completions.create(model="gpt", messages=huge, max_completion_tokens=16)
    assert (chat.value.code, chat.value.param) == ("context_length_exceeded", "messages")
    with pytest.raises(anthropic.BadRequestError) as messages:
        await anthropic_sdk.messages.create(model="gpt", max_tokens=16, messages=huge)
    assert messages.value.body["error"]["message"].startswith("prompt is too long")
    assert dialects.openai.requests == []


async def test_a_window_nobody_configured_is_the_providers_to_judge(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # Claude Code asks for 32,000 output tokens; no guessed window may refuse that before Claude sees it.
    hi = [{"role": "user", "content": "Hello"}]
    await anthropic_sdk.messages.create(model="claude", max_tokens=32_000, messages=hi)
    [sent] = dialects.anthropic.requests
    assert sent.body["max_tokens"] == 32_000


async def test_a_limit_above_the_models_most_output_goes_as_that_most(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # gpt writes at most 16,384 tokens; OpenAI refuses a larger max_tokens, which bounds nothing more.
    hi = [{"role": "user", "content": "Hello"}]
    await anthropic_sdk.messages.create(model="gpt", max_tokens=32_000, messages=hi)
    await anthropic_sdk.messages.create(model="gpt", max_tokens=1_000, messages=hi)
    assert [r.body["max_tokens"] for r in dialects.openai.requests] == [16_384, 1_000]


async def test_the_token_limit_goes_under_the_name_the_client_used(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # An OpenAI-compatible server that is not OpenAI's own, with no token_limit_field configured.
    hi = [{"role": "user", "content": "Hello"}]
    await openai_sdk.chat.completions.create(model="gpt", messages=hi, max_completion_tokens=60)  # type: ignore[arg-type]
    await openai_sdk.chat.completions.create(model="gpt", messages=hi, max_tokens=50)  # type: ignore[arg-type]
    await anthropic_sdk.messages.create(model="gpt", max_tokens=40, messages=hi)  # type: ignore[arg-type]
    limits = [{k: v for k, v in r.body.items() if k.startswith("max_")} for r in dialects.openai.requests]
    assert limits == [{"max_completion_tokens": 60}, {"max_tokens": 50}, {"max_tokens": 40}]
