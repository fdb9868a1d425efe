"""Generated requests on chat completions, embeddings and models: parsed, or refused with a 400 naming a
path of the body (schemathesis on the endpoints is in tests/e2e/gateway/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given

from atp_common.errors import AtpError, InvalidArgument
from atp_gateway.dialects.chat import parse
from tests.support.body_mutation import json_paths, mutated
from tests.support.examples import property_settings

CHAT: dict[str, Any] = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://i.test/a.png", "detail": "auto"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "reasoning_effort": "low",
    "logprobs": True,
    "top_logprobs": 2,
    "metadata": {"k": "v"},
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_the_base_body_parses() -> None:
    request, _ = parse(orjson.dumps(CHAT), None)  # type: ignore[arg-type]
    assert request.params.tools[0].name == "f" and request.stream


@property_settings(400)
@given(mutated(CHAT))
def test_chat_bodies_parse_or_name_their_fault(body: dict[str, Any]) -> None:
    try:
        parse(orjson.dumps(body), None)  # type: ignore[arg-type]
    except InvalidArgument as exc:
        # The param is a path of the body (or of a key the body lacks: a required field or its parent).
        assert (
            exc.param is None
            or exc.param in json_paths(body)
            or exc.param.rpartition(".")[0] in json_paths(body) | {""}
            or exc.param.rpartition("[")[0] in json_paths(body)
        ), (exc.param, body)
    except AtpError as exc:  # pragma: no cover - any other error class is a defect
        raise AssertionError(f"{type(exc).__name__}: {exc.message}") from None
