"""A routing refusal names the parameter the client set: the feature's other parameters included (a client
that sent only frequency_penalty reads frequency_penalty, streamed or not)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("sent", "param"),
    [
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"seed": 1, "frequency_penalty": 0.5}, "seed, frequency_penalty"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_refusal_names_what_was_sent(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, sent: dict[str, Any], param: str, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="claude", messages=HI, stream=stream, **sent)  # type: ignore[call-overload]
    assert caught.value.param == param
    assert not dialects.anthropic.requests


async def test_a_responses_option_is_named_as_sent(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.create(model="claude", input="Hi", extra_body={"prompt_cache_options": {}})
    assert caught.value.param == "prompt_cache_options"
