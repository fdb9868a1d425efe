"""Every typed part and parameter reaches OpenAI in its own shape, and every reply field reaches Generate.

A real adapters server on port 0 in front of a fake OpenAI on loopback that records the bodies it gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import from_rpc_error
from tests.support.fidelity_stack import Suite, running_stack


@pytest.fixture
async def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Suite]:
    async with running_stack(tmp_path, monkeypatch) as stack:
        yield stack


def _request(
    model: str = "gpt",
    *,
    stream: bool = False,
    messages: list[chat_pb2.ChatMessage] | None = None,
    **params: Any,
) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        tenant="acme",
        model=model,
        messages=messages or [chat_pb2.ChatMessage(role="user", content="hi")],
        params=chat_pb2.GenerationParams(**params),
        stream=stream,
    )


async def _generate(
    suite: Suite, request: adapters_pb2.GenerateRequest
) -> list[adapters_pb2.GenerateResponse]:
    return [response async for response in suite.stub.Generate(request, timeout=10)]


def _body(suite: Suite) -> dict[str, Any]:
    return suite.fake.requests[-1].body


WEATHER = b'{"type":"object","properties":{"city":{"type":"string"}}}'
SCHEMA = b'{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}'


async def test_every_parameter_reaches_openai_in_its_own_shape(suite: Suite) -> None:
    tools = [
        chat_pb2.Tool(
            type="function", name="weather", description="Weather", parameters_json=WEATHER, strict=True
        ),
        chat_pb2.Tool(type="custom", name="sql", description="Run SQL", format_json=b'{"type":"text"}'),
    ]
    await _generate(
        suite,
        _request(
            temperature=0.2,
            top_p=0.9,
            max_tokens=50,
            stop=["END"],
            seed=7,
            user="u-1",
            presence_penalty=0.5,
            frequency_penalty=0.25,
            tools=tools,
            tool_choice=chat_pb2.ToolChoice(
                mode="allowed_tools", allowed=["weather", "sql"], allowed_mode="required"
            ),
            response_format=chat_pb2.ResponseFormat(
                type="json_schema", name="out", description="The output", schema_json=SCHEMA, strict=True
            ),
            parallel_tool_calls=False,
            reasoning=chat_pb2.Reasoning(effort="high"),
            logprobs=True,
            top_logprobs=3,
            metadata={"team": "search"},
            store=True,
            service_tier="flex",
            prediction=chat_pb2.Prediction(content="draft"),
            modalities=["text", "audio"],
            audio=chat_pb2.AudioOutput(voice="alloy", format="wav"),
            logit_bias={"50256": -100},
            n=2,
            prompt_cache_key="pck",
            prompt_cache_retention="24h",
            safety_identifier="sid",
            verbosity="low",
            openai_options={"web_search_options": b'{"search_context_size":"low"}'},
            cache_control=chat_pb2.CacheControl(type="ephemeral"),
        ),
    )
    body = _body(suite)
    del body["messages"]
    assert body == {
        "model": "gpt-up",
        "stream": False,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "seed": 7,
        "user": "u-1",
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather",
                    "parameters": orjson.loads(WEATHER),
                    "strict": True,
                },
            },
            {
                "type": "custom",
                "custom": {"name": "sql", "description": "Run SQL", "format": {"type": "text"}},
            },
        ],
        "tool_choice": {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [
                    {"type": "function", "function": {"name": "weather"}},
                    {"type": "custom", "custom": {"name": "sql"}},
                ],
            },
        },
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "out",
                "description": "The output",
                "schema": orjson.loads(SCHEMA),
                "strict": True,
            },
        },
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "logprobs": True,
        "top_logprobs": 3,
        "metadata": {"team": "search"},
        "store": True,
        "service_tier": "flex",
        "prediction": {"type": "content", "content": "draft"},
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "logit_bias": {"50256": -100},
        "n": 2,
        "prompt_cache_key": "pck",
        "prompt_cache_retention": "24h",
        "safety_identifier": "sid",
        "verbosity": "low",
        "web_search_options": {"search_context_size": "low"},
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (chat_pb2.ToolChoice(mode="auto"), "auto"),
        (chat_pb2.ToolChoice(mode="none"), "none"),
        (chat_pb2.ToolChoice(mode="required"), "required"),
        (
            chat_pb2.ToolChoice(mode="function", name="weather"),
            {"type": "function", "function": {"name": "weather"}},
        ),
        (chat_pb2.ToolChoice(mode="custom", name="sql"), {"type": "custom", "custom": {"name": "sql"}}),
    ],
)
async def test_every_tool_choice_mode(suite: Suite, choice: chat_pb2.ToolChoice, wire: Any) -> None:
    tools = [chat_pb2.Tool(type="function", name="weather"), chat_pb2.Tool(type="custom", name="sql")]
    await _generate(suite, _request(tools=tools, tool_choice=choice))
    assert _body(suite)["tool_choice"] == wire


@pytest.mark.parametrize(
    "params",
    [
        {"tools": [chat_pb2.Tool(type="function", name="weather")]},
        {"metadata": {"team": "a"}},
        {"logprobs": True},
        {"n": 2},
    ],
)
async def test_one_rare_parameter_sends_only_itself(suite: Suite, params: dict[str, Any]) -> None:
    # Unset message fields (response_format, prediction, audio, tool_choice) are truthy objects in
    # Python's protobuf: only their presence may decide whether they are sent.
    await _generate(suite, _request(**params))
    assert set(_body(suite)) == {"model", "messages", "stream", *params}


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [
        (chat_pb2.Reasoning(budget_tokens=512), "low"),
        (chat_pb2.Reasoning(budget_tokens=1024), "low"),
        (chat_pb2.Reasoning(budget_tokens=4096), "medium"),
        (chat_pb2.Reasoning(budget_tokens=8193), "high"),
        (chat_pb2.Reasoning(effort="minimal"), "minimal"),
        (chat_pb2.Reasoning(effort="none"), "none"),
        (chat_pb2.Reasoning(disabled=True), None),
    ],
)
async def test_reasoning_effort_and_budgets(
    suite: Suite, reasoning: chat_pb2.Reasoning, effort: str | None
) -> None:
    await _generate(
        suite, _request(reasoning=reasoning, response_format=chat_pb2.ResponseFormat(type="json_object"))
    )
    body = _body(suite)
    assert body.get("reasoning_effort") == effort
    assert body["response_format"] == {"type": "json_object"}


async def test_every_part_and_message_field_reaches_openai(suite: Suite) -> None:
    messages = [
        chat_pb2.ChatMessage(role="developer", content="be brief", name="ops"),
        chat_pb2.ChatMessage(
            role="user",
            parts=[
                chat_pb2.ContentPart(
                    text="look", cache_control=chat_pb2.CacheControl(type="explicit", ttl="30m")
                ),
                chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x.test/a.png", detail="high")),
                chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="UklGRg==", format="wav")),
                chat_pb2.ContentPart(file=chat_pb2.FileContent(file_id="file-1")),
                chat_pb2.ContentPart(
                    file=chat_pb2.FileContent(
                        filename="a.pdf", file_data="JVBERi0=", media_type="application/pdf"
                    )
                ),
                chat_pb2.ContentPart(text="cached", cache_control=chat_pb2.CacheControl(type="ephemeral")),
            ],
        ),
        chat_pb2.ChatMessage(role="assistant", refusal="I can't", audio_id="audio_1"),
        chat_pb2.ChatMessage(role="assistant", parts=[chat_pb2.ContentPart(refusal="no")]),
        chat_pb2.ChatMessage(
            role="assistant",
            tool_calls=[
                chat_pb2.ToolCall(
                    id="c1", type="function", function_name="weather", arguments='{"city":"Oslo"}'
                ),
                chat_pb2.ToolCall(id="c2", type="custom", function_name="sql", arguments="SELECT 1"),
            ],
        ),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c1", content="sunny"),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c2", content="no such table", is_error=True),
        chat_pb2.ChatMessage(role="user", content="and now?"),
    ]
    await _generate(suite, _request(messages=messages))
    assert _body(suite)["messages"] == [
        {"role": "developer", "content": "be brief", "name": "ops"},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "look",
                    "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"},
                },
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                },
                {"type": "text", "text": "cached"},
            ],
        },
        {"role": "assistant", "content": None, "refusal": "I can't", "audio": {"id": "audio_1"}},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {"id": "c2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "tool", "content": "Error: no such table", "tool_call_id": "c2"},
        {"role": "user", "content": "and now?"},
    ]


async def test_azure_gets_the_same_body_on_its_deployment_path(suite: Suite) -> None:
    await _generate(suite, _request("az-gpt", logprobs=True))
    sent = suite.fake.requests[-1]
    assert sent.path == "/openai/deployments/dep-1/chat/completions" and sent.query == {
        "api-version": "2025-01-01"
    }
    assert sent.headers["api-key"] == "az-key" and sent.body["logprobs"] is True


async def test_what_no_candidate_can_honour_is_invalid_argument_naming_the_parameter(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _generate(suite, _request(top_k=5))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gpt: lacks top_k" in caught.value.details() and from_rpc_error(caught.value).param == "top_k"
    # A file by URL has no OpenAI shape: refused by its path, never dropped.
    url_file = chat_pb2.ContentPart(file=chat_pb2.FileContent(url="https://x.test/a.pdf"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _generate(suite, _request(messages=[chat_pb2.ChatMessage(role="user", parts=[url_file])]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).param == "messages[0].content[0].file.url"
    assert not suite.fake.requests


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"logit_bias": {"50256": 101}}, "logit_bias.50256"),
        ({"logit_bias": {"word": 1}}, "logit_bias.word"),
    ],
)
async def test_out_of_range_values_are_refused_before_any_call(suite: Suite, params: dict, path: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _generate(suite, _request(**params))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).param == path
    assert not suite.fake.requests


async def test_end_user_tags_and_dialect_are_recorded_with_the_observation(suite: Suite) -> None:
    request = _request(user="u-1")
    request.request_id, request.end_user, request.dialect = "rec-1", "person-9", "responses"
    request.tags["team"] = "search"
    await _generate(suite, request)
    observation = await suite.observer.wait_for("rec-1")
    assert (observation.end_user, dict(observation.tags), observation.dialect) == (
        "person-9",
        {"team": "search"},
        "responses",
    )
