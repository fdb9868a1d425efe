"""Anthropic's betas (the anthropic-beta header, the SDK's `betas=`) through the real gateway and adapters:
sent as they came to Anthropic's models, for generation and counts; other providers get none of them."""

from __future__ import annotations

import anthropic
import httpx
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

BETAS = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
HI = [{"role": "user", "content": "Hello"}]


async def test_betas_reach_anthropic_for_messages_streams_and_counts(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    await anthropic_sdk.beta.messages.create(model="claude", max_tokens=64, messages=HI, betas=BETAS)
    async with anthropic_sdk.beta.messages.stream(
        model="claude", max_tokens=64, messages=HI, betas=BETAS
    ) as events:
        await events.get_final_message()
    await anthropic_sdk.beta.messages.count_tokens(model="claude", messages=HI, betas=BETAS)
    sent = dialects.anthropic.requests
    assert [r.path for r in sent] == ["/v1/messages", "/v1/messages", "/v1/messages/count_tokens"]
    assert [r.headers.get("anthropic-beta") for r in sent[:2]] == [",".join(BETAS)] * 2
    # The SDK adds the count's own beta; it travels with the others.
    assert sent[2].headers["anthropic-beta"].split(",") == [*BETAS, "token-counting-2024-11-01"]
    # A request without betas sends no header at all.
    await anthropic_sdk.messages.create(model="claude", max_tokens=64, messages=HI)
    assert "anthropic-beta" not in {k.lower() for k in dialects.anthropic.requests[-1].headers}


async def test_repeated_headers_are_merged_once_each_and_bad_names_refused(
    dialects: DialectStack, api_key: str
) -> None:
    body = {"model": "claude", "max_tokens": 16, "messages": HI}
    base = [("x-api-key", api_key), ("anthropic-version", "2023-06-01")]
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        merged = await http.post(
            "/v1/messages",
            json=body,
            headers=[*base, ("anthropic-beta", f"{BETAS[0]} , {BETAS[1]}"), ("anthropic-beta", BETAS[0])],
        )
        bad = await http.post("/v1/messages", json=body, headers=[*base, ("anthropic-beta", "Not A Beta")])
    assert merged.status_code == 200
    assert dialects.anthropic.requests[-1].headers["anthropic-beta"] == ",".join(BETAS)
    assert bad.status_code == 400
    error = strict(ErrorResponse, bad.json()).error
    assert error.type == "invalid_request_error" and error.message.startswith("anthropic-beta")
    assert len(dialects.anthropic.requests) == 1


async def test_other_providers_serve_without_betas(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # Claude Code's betas switch Anthropic's own behaviours; a route to another provider serves the request.
    message = await anthropic_sdk.beta.messages.create(model="gpt", max_tokens=64, messages=HI, betas=BETAS)
    assert message.content and not dialects.anthropic.requests
    [sent] = dialects.openai.requests
    assert "anthropic-beta" not in {k.lower() for k in sent.headers}
    assert not any("beta" in key for key in sent.body)
