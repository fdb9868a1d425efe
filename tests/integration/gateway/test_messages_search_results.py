"""Search results and documents given as text blocks, with the anthropic SDK through the gateway."""

from __future__ import annotations

import anthropic
import pytest

from tests.support.dialect_stack import DialectStack

WEATHER = {
    "name": "search",
    "description": "Search the knowledge base",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
RESULT = {
    "type": "search_result",
    "source": "https://kb.example/rome",
    "title": "Rome weather",
    "content": [{"type": "text", "text": "Rome is sunny."}, {"type": "text", "text": "It is 25 degrees."}],
    "citations": {"enabled": True},
}
CONTENT_DOCUMENT = {
    "type": "document",
    "source": {
        "type": "content",
        "content": [{"type": "text", "text": "Clause 1."}, {"type": "text", "text": "Clause 2."}],
    },
    "title": "Contract",
    "context": "Signed 2026",
    "citations": {"enabled": True},
}


async def test_search_results_and_content_documents_reach_claude_as_sent(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    messages = [
        {
            "role": "user",
            "content": [RESULT, CONTENT_DOCUMENT, {"type": "text", "text": "Weather and clauses?"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "rome"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [RESULT]}]},
    ]
    await anthropic_sdk.messages.create(model="claude", max_tokens=64, tools=[WEATHER], messages=messages)
    sent = dialects.anthropic.requests[-1].body["messages"]
    assert sent[0]["content"][:2] == [RESULT, CONTENT_DOCUMENT]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [RESULT]}]
    # A document's content may also be one string.
    one = {**CONTENT_DOCUMENT, "source": {"type": "content", "content": "Clause 1."}}
    await anthropic_sdk.messages.create(
        model="claude",
        max_tokens=64,
        messages=[{"role": "user", "content": [one, {"type": "text", "text": "?"}]}],
    )
    document = dialects.anthropic.requests[-1].body["messages"][0]["content"][0]
    assert document["source"] == {"type": "content", "content": [{"type": "text", "text": "Clause 1."}]}


@pytest.mark.parametrize("model", ["gpt", "gem"])
async def test_providers_without_search_results_refuse_them_by_name(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, model: str
) -> None:
    for block, where in ((RESULT, "messages[0].content[0]"), (CONTENT_DOCUMENT, "messages[0].content[0]")):
        with pytest.raises(anthropic.BadRequestError) as refused:
            await anthropic_sdk.messages.create(
                model=model,
                max_tokens=64,
                messages=[{"role": "user", "content": [block, {"type": "text", "text": "?"}]}],
            )
        assert where in refused.value.message
    assert not dialects.openai.requests and not dialects.gemini.requests


async def test_a_mixed_route_serves_search_results_from_the_provider_that_takes_them(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    for _ in range(4):
        await anthropic_sdk.messages.create(
            model="mixed",
            max_tokens=64,
            messages=[{"role": "user", "content": [RESULT, {"type": "text", "text": "?"}]}],
        )
    assert len(dialects.anthropic.requests) == 4


async def test_blocks_inside_take_text_alone(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    image_inside = {
        **RESULT,
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}],
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        await anthropic_sdk.messages.create(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": [image_inside]}]
        )
    assert "messages[0].content[0].content[0].type" in refused.value.message
    missing = {key: value for key, value in RESULT.items() if key != "title"}
    with pytest.raises(anthropic.BadRequestError) as refused:
        await anthropic_sdk.messages.create(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": [missing]}]
        )
    assert "title" in refused.value.message
    assert not dialects.anthropic.requests
