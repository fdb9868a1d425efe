"""A Messages client's request reaches Claude in the shapes it was sent, through the real gateway and
adapters: a string system prompt and string turns stay strings, blocks stay blocks, and thinking without a
display gets none (the model's default, as from Anthropic)."""

from __future__ import annotations

import anthropic

from tests.support.dialect_stack import DialectStack

TURNS = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
]


async def test_strings_stay_strings_and_blocks_stay_blocks(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await anthropic_sdk.messages.create(model="claude", max_tokens=32, system="Be terse.", messages=TURNS)
    blocks = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    await anthropic_sdk.messages.create(model="claude", max_tokens=32, system=blocks, messages=TURNS)  # type: ignore[arg-type]
    plain, cached = (request.body for request in dialects.anthropic.requests)
    assert plain["system"] == "Be terse." and plain["messages"] == TURNS
    assert cached["system"] == blocks


async def test_thinking_goes_as_the_client_asked(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    for thinking in (
        {"type": "enabled", "budget_tokens": 1024},
        {"type": "enabled", "budget_tokens": 1024, "display": "omitted"},
        {"type": "enabled", "budget_tokens": 1024, "display": "summarized"},
    ):
        await anthropic_sdk.messages.create(
            model="claude",
            max_tokens=2048,
            messages=TURNS[:1],
            thinking=thinking,  # type: ignore[arg-type]
        )
    sent = [request.body["thinking"] for request in dialects.anthropic.requests]
    assert sent == [
        {"type": "enabled", "budget_tokens": 1024},
        {"type": "enabled", "budget_tokens": 1024, "display": "omitted"},
        {"type": "enabled", "budget_tokens": 1024, "display": "summarized"},
    ]
