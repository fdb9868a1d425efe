"""OpenAI's prompt cache hints and default verbosity reach every provider in its own terms, through the real
gateway and adapters: Claude marks an unmarked request for caching (automatic caching), Gemini caches by
itself, and verbosity medium (OpenAI's default) is every model's by omission, so none of them filters a
Codex-style request out."""

from __future__ import annotations

import openai
import pytest

from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("retention", "marked"),
    [
        (None, {"type": "ephemeral"}),
        ("in_memory", {"type": "ephemeral"}),
        ("24h", {"type": "ephemeral", "ttl": "1h"}),
    ],
)
async def test_claude_caches_a_keyed_request(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI, retention: str | None, marked: dict[str, str]
) -> None:
    extra = {"prompt_cache_retention": retention} if retention else {}
    await openai_sdk.chat.completions.create(model="claude", messages=HI, prompt_cache_key="conv-1", **extra)  # type: ignore[arg-type]
    [sent] = dialects.anthropic.requests
    assert sent.body["cache_control"] == marked
    assert "prompt_cache_key" not in sent.body and "prompt_cache_retention" not in sent.body


async def test_a_request_the_client_marked_itself_keeps_only_its_marks(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    marked = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    await openai_sdk.chat.completions.create(model="claude", messages=marked, prompt_cache_key="conv-1")  # type: ignore[arg-type]
    [sent] = dialects.anthropic.requests
    assert "cache_control" not in sent.body
    assert sent.body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


async def test_gemini_needs_no_mark(dialects: DialectStack, openai_sdk: openai.AsyncOpenAI) -> None:
    await openai_sdk.chat.completions.create(
        model="gem", messages=HI, prompt_cache_key="conv-1", prompt_cache_retention="24h"
    )
    [sent] = dialects.gemini.requests
    assert set(sent.body) == {"contents"}


async def test_a_codex_style_request_reaches_claude(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.responses.create(
        model="claude",
        input="list files",
        prompt_cache_key="sess-1",
        text={"verbosity": "medium"},
        store=False,
    )
    [sent] = dialects.anthropic.requests
    assert "verbosity" not in sent.body and sent.body["cache_control"] == {"type": "ephemeral"}
    # Any other verbosity is OpenAI's alone: Claude's candidate is filtered, and the refusal names it.
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk.responses.create(model="claude", input="list files", text={"verbosity": "low"})
    assert caught.value.param == "text.verbosity"
