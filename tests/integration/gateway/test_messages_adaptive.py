"""Adaptive thinking (what Claude's newest models take, and clients send for them) through the real gateway
and adapters: Anthropic gets it as sent with its effort; other providers get their own form of "the model
decides", and a model that cannot think is not filtered out by it."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

HI = [{"role": "user", "content": "Hello"}]


async def _create(anthropic_sdk: anthropic.AsyncAnthropic, model: str, **extra: Any) -> None:
    await anthropic_sdk.messages.create(
        model=model, max_tokens=4096, messages=HI, extra_body={"thinking": {"type": "adaptive"}, **extra}
    )


async def test_anthropic_gets_adaptive_thinking_and_its_effort_as_sent(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await _create(anthropic_sdk, "claude", output_config={"effort": "high"})
    await anthropic_sdk.messages.create(
        model="claude",
        max_tokens=4096,
        messages=HI,
        extra_body={"thinking": {"type": "adaptive", "display": "omitted"}},
    )
    with_effort, omitted = (r.body for r in dialects.anthropic.requests)
    assert with_effort["thinking"] == {"type": "adaptive"}
    assert with_effort["output_config"] == {"effort": "high"} and with_effort["max_tokens"] == 4096
    assert (
        omitted["thinking"] == {"type": "adaptive", "display": "omitted"} and "output_config" not in omitted
    )


async def test_other_providers_get_their_own_form_of_the_model_decides(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await _create(anthropic_sdk, "gpt")
    await _create(anthropic_sdk, "gpt", output_config={"effort": "low"})
    plain, guided = (r.body for r in dialects.openai.requests)
    assert "reasoning_effort" not in plain and guided["reasoning_effort"] == "low"
    await _create(anthropic_sdk, "gem")
    [to_gemini] = dialects.gemini.requests
    assert to_gemini.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": -1,
        "includeThoughts": True,
    }


async def test_adaptive_takes_no_budget(dialects: DialectStack, api_key: str) -> None:
    body = {
        "model": "claude",
        "max_tokens": 4096,
        "messages": HI,
        "thinking": {"type": "adaptive", "budget_tokens": 2048},
    }
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        reply = await http.post(
            "/v1/messages", json=body, headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"}
        )
    assert reply.status_code == 400
    assert "thinking.budget_tokens" in strict(ErrorResponse, reply.json()).error.message
    assert not dialects.anthropic.requests


async def test_effort_max_goes_to_anthropic_and_keeps_the_request_there(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await _create(anthropic_sdk, "claude", output_config={"effort": "max"})
    await anthropic_sdk.messages.create(
        model="claude", max_tokens=4096, messages=HI, extra_body={"output_config": {"effort": "max"}}
    )
    adaptive, plain = (r.body for r in dialects.anthropic.requests)
    assert adaptive["thinking"] == {"type": "adaptive"} and adaptive["output_config"] == {"effort": "max"}
    assert "thinking" not in plain and plain["output_config"] == {"effort": "max"}
    # azure-first ranks Azure first: max is Anthropic's, so claude serves; gpt alone cannot.
    served = await anthropic_sdk.messages.create(
        model="azure-first", max_tokens=4096, messages=HI, extra_body={"output_config": {"effort": "max"}}
    )
    assert served.model == "claude" and not dialects.openai.requests
    with pytest.raises(anthropic.BadRequestError) as caught:
        await _create(anthropic_sdk, "gpt", output_config={"effort": "max"})
    error = strict(ErrorResponse, caught.value.body).error
    assert "output_config.effort" in error.message and not dialects.openai.requests


async def test_a_chat_clients_effort_reaches_an_adaptive_only_model_as_adaptive_thinking(
    dialects: DialectStack, api_key: str
) -> None:
    chat = openai.AsyncOpenAI(base_url=dialects.base_url + "/v1", api_key=api_key, max_retries=0, timeout=10)
    try:
        await chat.chat.completions.create(
            model="claude-new", messages=HI, reasoning_effort="high", max_completion_tokens=4000
        )
        await chat.chat.completions.create(
            model="claude", messages=HI, reasoning_effort="high", max_completion_tokens=4000
        )
    finally:
        await chat.close()
    new, old = (r.body for r in dialects.anthropic.requests)
    assert new["model"] == "claude-new-upstream"
    assert new["thinking"] == {"type": "adaptive", "display": "omitted"} and new["output_config"] == {
        "effort": "high"
    }
    assert old["thinking"]["type"] == "enabled" and "output_config" not in old
