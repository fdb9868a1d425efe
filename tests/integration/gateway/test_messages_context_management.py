"""Anthropic's context_management (Claude Code sends it with Claude's newest models) through the real gateway
and adapters: sent as it came to Anthropic, whose applied edits reach the client whole and streamed; only
edits that change what the model reads need Anthropic, so Claude Code's clear_thinking serves anywhere."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types.beta import BetaMessage
from anthropic.types.shared import ErrorResponse

from tests.fakes.anthropic_checks import CONTEXT_MANAGEMENT_BETA
from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

HI = [{"role": "user", "content": "Hello"}]
THINKING = {"type": "enabled", "budget_tokens": 1024}
# What Claude Code sends: keep every thinking block in context.
KEEP_THINKING = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
CLEAR_TOOLS = {
    "edits": [
        {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 30000}},
        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 2}},
    ]
}


async def _create(anthropic_sdk: anthropic.AsyncAnthropic, model: str, edits: dict[str, Any]) -> BetaMessage:
    raw = await anthropic_sdk.beta.messages.with_raw_response.create(
        model=model,
        max_tokens=2048,
        messages=HI,
        thinking=THINKING,
        context_management=edits,
        betas=[CONTEXT_MANAGEMENT_BETA],
    )
    return strict(BetaMessage, orjson.loads(raw.http_response.content))


async def test_anthropic_gets_the_edits_as_sent_and_its_applied_edits_come_back(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    message = await _create(anthropic_sdk, "claude", CLEAR_TOOLS)
    [sent] = dialects.anthropic.requests
    assert sent.body["context_management"] == CLEAR_TOOLS
    assert sent.headers["anthropic-beta"] == CONTEXT_MANAGEMENT_BETA
    assert message.context_management is not None
    applied = [(e.type, e.cleared_input_tokens) for e in message.context_management.applied_edits]
    assert applied == [("clear_tool_uses_20250919", 42), ("clear_thinking_20251015", 42)]


async def test_a_stream_carries_the_applied_edits_in_message_delta(
    dialects: DialectStack, api_key: str
) -> None:
    body = {
        "model": "claude",
        "max_tokens": 2048,
        "messages": HI,
        "thinking": THINKING,
        "context_management": KEEP_THINKING,
        "stream": True,
    }
    headers = {
        "x-api-key": api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": CONTEXT_MANAGEMENT_BETA,
    }
    async with (
        httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http,
        http.stream("POST", "/v1/messages", json=body, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        data = b"".join([chunk async for chunk in reply.aiter_bytes()])
    events = [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["context_management"] == {
        "applied_edits": [
            {"type": "clear_thinking_20251015", "cleared_input_tokens": 42, "cleared_thinking_turns": 1}
        ]
    }


async def test_claude_codes_clear_thinking_serves_on_any_provider(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    message = await _create(anthropic_sdk, "gpt", KEEP_THINKING)
    assert message.content and message.context_management is None
    [sent] = dialects.openai.requests
    assert "context_management" not in sent.body and not dialects.anthropic.requests


async def test_edits_that_change_the_context_keep_to_anthropic(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # azure-first ranks Azure first; clear_tool_uses filters it, so claude serves.
    served = await _create(anthropic_sdk, "azure-first", CLEAR_TOOLS)
    assert served.model == "claude" and len(dialects.anthropic.requests) == 1
    with pytest.raises(anthropic.BadRequestError) as caught:
        await _create(anthropic_sdk, "gpt", CLEAR_TOOLS)
    error = strict(ErrorResponse, caught.value.body).error
    assert error.type == "invalid_request_error" and "context_management" in error.message
    assert not dialects.openai.requests


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"edits": "all"}, "context_management.edits"),
        ({"edits": [{"keep": "all"}]}, "context_management.edits[0].type"),
        ({"strategy": "x"}, "context_management.strategy"),
    ],
)
async def test_a_malformed_context_management_is_refused_by_path(
    dialects: DialectStack, api_key: str, value: Any, path: str
) -> None:
    body = {"model": "claude", "max_tokens": 16, "messages": HI, "context_management": value}
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        reply = await http.post(
            "/v1/messages", json=body, headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"}
        )
    assert reply.status_code == 400
    assert path in strict(ErrorResponse, reply.json()).error.message
    assert not dialects.anthropic.requests


async def test_a_count_carries_the_edits_to_anthropic(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await anthropic_sdk.beta.messages.count_tokens(
        model="claude",
        messages=HI,
        thinking=THINKING,
        context_management=KEEP_THINKING,
        betas=[CONTEXT_MANAGEMENT_BETA],
    )
    [sent] = dialects.anthropic.requests
    assert sent.path == "/v1/messages/count_tokens" and sent.body["context_management"] == KEEP_THINKING
