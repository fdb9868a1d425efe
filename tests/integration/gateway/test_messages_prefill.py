"""A Messages request ending with an assistant turn (a prefill: the reply continues it) through the real
gateway and adapters: only Claude's APIs continue one, so other candidates are filtered out; a Chat client's
final assistant turn is context and goes anywhere."""

from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

PREFILLED = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "The colour is"},
]


async def test_a_prefill_goes_only_to_claude(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # azure-first always tries Azure (OpenAI's API) first: the prefill must pass it over for Claude.
    await anthropic_sdk.messages.create(model="azure-first", max_tokens=32, messages=PREFILLED)
    assert not dialects.openai.requests
    [sent] = dialects.anthropic.requests
    assert sent.body["messages"][-1]["role"] == "assistant"


async def test_a_prefill_to_a_model_that_cannot_continue_one_is_refused_by_name(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    for model in ("gpt", "gem"):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await anthropic_sdk.messages.create(model=model, max_tokens=32, messages=PREFILLED)
        error = strict(ErrorResponse, caught.value.body).error
        assert error.type == "invalid_request_error" and "lacks prefill" in error.message
    assert not dialects.openai.requests and not dialects.gemini.requests


async def test_a_chat_clients_final_assistant_turn_is_context_anywhere(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="gpt", messages=PREFILLED)  # type: ignore[arg-type]
    [sent] = dialects.openai.requests
    assert sent.body["messages"][-1] == {"role": "assistant", "content": "The colour is"}


async def test_counting_a_prefilled_request_needs_no_continuation(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    counted = await anthropic_sdk.messages.count_tokens(model="gpt", messages=PREFILLED)  # type: ignore[arg-type]
    assert counted.input_tokens > 0
