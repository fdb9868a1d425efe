"""Anthropic's per-tool fields that Claude Code sends (eager_input_streaming, input_examples) through the real
gateway and adapters: Anthropic gets them as sent; other providers stream tool input as it comes anyway and
read the examples at the end of the tool's description; server-tool fields stay refused by name."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

HI = [{"role": "user", "content": "Write the file"}]
EXAMPLES = [{"path": "a.txt", "content": "hello"}, {"path": "b/c.md", "content": "# title"}]
WRITE: dict[str, Any] = {
    "name": "write_file",
    "description": "Write content to a file",
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
    "eager_input_streaming": True,
    "input_examples": EXAMPLES,
}


async def test_anthropic_gets_the_tool_fields_as_sent(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await anthropic_sdk.messages.create(model="claude", max_tokens=256, messages=HI, tools=[WRITE])
    [tool] = dialects.anthropic.requests[0].body["tools"]
    assert tool == WRITE


async def test_other_providers_read_the_examples_in_the_description(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await anthropic_sdk.messages.create(model="gpt", max_tokens=256, messages=HI, tools=[WRITE])
    await anthropic_sdk.messages.create(model="gem", max_tokens=256, messages=HI, tools=[WRITE])
    [to_openai] = dialects.openai.requests[0].body["tools"]
    expected = "Write content to a file\n\nExamples of valid input:\n" + "\n".join(
        orjson.dumps(example).decode() for example in EXAMPLES
    )
    assert to_openai["function"]["description"] == expected
    assert set(to_openai["function"]) == {"name", "description", "parameters"}
    [declaration] = dialects.gemini.requests[0].body["tools"][0]["functionDeclarations"]
    assert declaration["description"] == expected


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"defer_loading": True}, "tools[0].defer_loading"),
        ({"input_examples": ["x"]}, "tools[0].input_examples[0]"),
    ],
)
async def test_server_tool_fields_and_malformed_examples_are_refused_by_path(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, extra: dict[str, Any], path: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_sdk.messages.create(
            model="claude", max_tokens=256, messages=HI, tools=[{**WRITE, **extra}]
        )
    assert path in strict(ErrorResponse, caught.value.body).error.message
    assert not dialects.anthropic.requests
