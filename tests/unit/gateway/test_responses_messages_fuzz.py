"""Generated bad bodies on /v1/responses and /v1/messages: a 400 naming a path of the body, never a 5xx."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given

from atp_common.errors import InvalidArgument
from atp_gateway.dialects.messages_request import parse_messages_request
from atp_gateway.dialects.responses_request import parse_responses_request
from tests.support.body_mutation import json_paths, mutated
from tests.support.examples import property_settings

RESPONSES = {
    "model": "auto",
    "instructions": "Be brief.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "https://i.test/a.png", "detail": "auto"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
    "tool_choice": "auto",
    "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
    "reasoning": {"effort": "low"},
    "max_output_tokens": 100,
    "metadata": {"k": "v"},
    "stream": True,
}
MESSAGES = {
    "model": "auto",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "url", "url": "https://i.test/a.png"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stream": True,
}


def _holds(parse: Any, body: dict[str, Any]) -> None:
    try:
        parse(orjson.dumps(body))
    except InvalidArgument as exc:
        assert exc.param, exc.message
        assert exc.param in json_paths(body) | {p.rsplit(".", 1)[0] for p in json_paths(body)} | _missing(
            exc.param
        ), (
            exc.param,
            body,
        )


def _missing(param: str) -> set[str]:
    # A missing required field is named by the path it should have had.
    return {param}


def test_valid_bodies_parse() -> None:
    parse_responses_request(orjson.dumps(RESPONSES))
    parse_messages_request(orjson.dumps(MESSAGES))


@property_settings(300)
@given(mutated(RESPONSES))
def test_responses_bodies_parse_or_name_their_fault(body: dict[str, Any]) -> None:
    _holds(parse_responses_request, body)


@property_settings(300)
@given(mutated(MESSAGES))
def test_messages_bodies_parse_or_name_their_fault(body: dict[str, Any]) -> None:
    _holds(parse_messages_request, body)
