"""Generated requests on chat completions, embeddings and models: parsed, or refused with a 400 naming a
path of the body; schemathesis (positive and negative) finds no 5xx and no reply off the schema."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from atp_common.errors import AtpError, InvalidArgument
from atp_gateway.dialects.chat import parse
from tests.support.body_mutation import json_paths, mutated

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


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


async def test_schemathesis_on_embeddings_and_models(live, api_key, tmp_path: Path) -> None:
    """Positive and negative generated requests (schemathesis CLI, real socket) on embeddings and models;
    chat completions has its own run in test_live.py (the chat schema is too large for the coverage phase
    within the test's time)."""
    st_cli = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st_cli),
        "run",
        f"http://127.0.0.1:{live.port}/openapi.json",
        "--include-path-regex",
        "^/v1/(embeddings|models.*)$",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "60",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "3",
        "--request-timeout",
        "5",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {api_key}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, output.decode()[-6000:]
