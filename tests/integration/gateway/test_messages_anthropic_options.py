"""Anthropic-only request options (speed, inference_geo) and Anthropic's own usage fields through the real
gateway and adapters: sent to Anthropic as they came, kept from providers that cannot honour them, and
Anthropic's usage (cache_creation, speed, inference_geo, output_tokens_details) returned whole."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

HI = [{"role": "user", "content": "Hello"}]


async def test_anthropic_gets_the_options_and_its_usage_comes_back_whole(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    raw = await anthropic_sdk.messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=HI, speed="fast", inference_geo="us"
    )
    message = strict(Message, orjson.loads(raw.http_response.content))
    [sent] = dialects.anthropic.requests
    assert (sent.body["speed"], sent.body["inference_geo"]) == ("fast", "us")
    usage = message.usage
    assert (usage.speed, usage.inference_geo) == ("fast", "us")
    assert usage.cache_creation is not None and usage.output_tokens_details is not None


async def test_a_stream_reports_the_usage_fields_message_delta_holds(
    dialects: DialectStack, api_key: str
) -> None:
    body = {"model": "claude", "max_tokens": 64, "messages": HI, "speed": "fast", "stream": True}
    headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    async with (
        httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http,
        http.stream("POST", "/v1/messages", json=body, headers=headers) as reply,
    ):
        data = b"".join([chunk async for chunk in reply.aiter_bytes()])
    events = [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]
    [delta] = [e for e in events if e["type"] == "message_delta"]
    strict(RawMessageStreamEvent, delta)
    assert delta["usage"]["output_tokens_details"] == {"thinking_tokens": 0}


async def test_other_providers_serve_the_standard_speed_and_refuse_the_rest(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    served = await anthropic_sdk.messages.create(model="gpt", max_tokens=64, messages=HI, speed="standard")
    assert served.content and "speed" not in dialects.openai.requests[0].body
    for options, named in (({"speed": "fast"}, "speed"), ({"inference_geo": "eu"}, "inference_geo")):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await anthropic_sdk.messages.create(model="gpt", max_tokens=64, messages=HI, **options)
        assert named in strict(ErrorResponse, caught.value.body).error.message
    assert len(dialects.openai.requests) == 1
