"""An OpenAI-compatible server's reply fields beyond OpenAI's reach chat clients as the server sent them
(vLLM's stop_reason, OpenRouter's reasoning fields, Perplexity's citations, Groq's x_groq, usage extras),
whole and streamed; other dialects do not get them."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson

from tests.support.dialect_stack import DialectStack

HI = [{"role": "user", "content": "Hello there"}]
CITATIONS = ["https://example.com/a", "https://example.com/b"]
DETAILS = [{"type": "reasoning.text", "text": "two and two", "format": "unknown"}]


def _completion() -> dict[str, Any]:
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 1,
        "citations": CITATIONS,
        "x_groq": {"id": "req_1"},
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "4",
                    "reasoning": "two and two",
                    "reasoning_details": DETAILS,
                    "annotations": [],
                },
                "finish_reason": "stop",
                "stop_reason": 128,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "cost": 0.00012},
    }


async def test_a_whole_replys_extra_fields_reach_the_chat_client(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    dialects.openai.completion = _completion()
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="gpt", messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert body["citations"] == CITATIONS and body["x_groq"] == {"id": "req_1"}
    assert body["id"].startswith("chatcmpl-") and body["id"] != "gen-1"  # ATP's own stay ATP's
    choice = body["choices"][0]
    assert choice["stop_reason"] == 128 and choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["reasoning"] == "two and two" and message["reasoning_details"] == DETAILS
    assert message["reasoning_content"] == "two and two" and message["annotations"] == []
    assert body["usage"]["cost"] == 0.00012 and body["usage"]["total_tokens"] == 6
    # The SDK keeps what it does not model as extra fields.
    parsed = raw.parse()
    assert parsed.model_extra is not None and parsed.model_extra["citations"] == CITATIONS


async def test_a_streams_extra_chunk_fields_reach_its_last_events(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    envelope = {"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "citations": CITATIONS}
    dialects.openai.chunks = [
        {**envelope, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "4"}}]},
        {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **envelope,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "cost": 0.00012},
        },
    ]
    stream = await openai_sdk.chat.completions.create(
        model="gpt", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    finishing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finishing.model_extra is not None and finishing.model_extra["citations"] == CITATIONS
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra == {"cost": 0.00012}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "4"


async def test_extras_stay_with_the_dialect_that_speaks_the_servers_api(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic, openai_sdk: openai.AsyncOpenAI
) -> None:
    dialects.openai.completion = _completion()
    raw = await anthropic_sdk.messages.with_raw_response.create(model="gpt", max_tokens=32, messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert "openai_extra" not in body and "citations" not in body
    response = await openai_sdk.responses.create(model="gpt", input="Hello there")
    assert response.output_text == "4"


async def test_a_reply_without_extras_has_none(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    raw = await openai_sdk.chat.completions.with_raw_response.create(model="gpt", messages=HI)
    body = orjson.loads(raw.http_response.content)
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "service_tier",
        "choices",
        "usage",
    }
    assert set(body["choices"][0]["message"]) == {"role", "content", "refusal"}
