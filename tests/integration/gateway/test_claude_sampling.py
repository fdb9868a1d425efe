"""temperature and top_p together through the real gateway and adapters to Claude, whose newer models
refuse the two at once: a value at Claude's default is honoured by leaving it out; two others go as sent
to a model that takes them, and a model configured `sampling: temperature_or_top_p` is passed over."""

from __future__ import annotations

import openai
import pytest

from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Say hi."}]


@pytest.mark.parametrize(
    ("sampling", "sent"),
    [
        ({"temperature": 0.2, "top_p": 1}, {"temperature": 0.2}),
        ({"temperature": 1, "top_p": 0.5}, {"top_p": 0.5}),
        ({"temperature": 0.2}, {"temperature": 0.2}),
        ({"top_p": 1}, {"top_p": 1}),
    ],
)
async def test_a_newer_claude_gets_one_sampler_when_the_other_is_its_default(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, sampling: dict, sent: dict
) -> None:
    await openai_sdk.chat.completions.create(model="claude-new", messages=HI, **sampling)
    [request] = dialects.anthropic.requests
    assert {k: request.body[k] for k in ("temperature", "top_p") if k in request.body} == sent


async def test_two_non_default_samplers_go_as_sent_where_the_model_takes_them(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="claude", messages=HI, temperature=0.2, top_p=0.5)
    sent = dialects.anthropic.requests[-1].body
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.5)


async def test_a_model_taking_one_of_them_is_passed_over_and_alone_a_400_names_top_p(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # claude-new is configured `sampling: temperature_or_top_p`, as Claude's newer models refuse both.
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="claude-new", messages=HI, temperature=0.2, top_p=0.5)
    assert caught.value.param == "top_p" and "claude-new" in caught.value.message
    assert not dialects.anthropic.requests
