"""temperature and top_p together through the real gateway and adapters to Claude, whose newer models
refuse the two at once: a value at Claude's default is honoured by leaving it out; two others go as sent,
and a model that refuses them says so in the client's error."""

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


async def test_two_non_default_samplers_go_as_sent_and_a_refusal_is_the_clients_error(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(model="claude", messages=HI, temperature=0.2, top_p=0.5)
    assert (
        dialects.anthropic.requests[-1].body["temperature"],
        dialects.anthropic.requests[-1].body["top_p"],
    ) == (
        0.2,
        0.5,
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.chat.completions.create(model="claude-new", messages=HI, temperature=0.2, top_p=0.5)
    assert "cannot both be specified" in caught.value.message
