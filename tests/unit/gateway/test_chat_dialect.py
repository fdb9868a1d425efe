"""The chat dialect against the fake adapters: what every request carries, legacy functions, every
message and part type in the typed request, and replies checked against the openai SDK's models."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_gateway.dialects.chat_reply import ChatEncoder

CHAT = "/v1/chat/completions"
FUNCTIONS = [{"name": "get_weather", "parameters": {"type": "object"}}]


def _body(model: str = "auto", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def _chunks(raw: bytes) -> list[dict]:
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    return [orjson.loads(e[6:]) for e in events[:-1]]


async def test_every_request_is_stamped_with_caller_end_user_tags_and_dialect(client, adapters):
    body = _body(user="body-user", metadata={"team": "search", "env": "prod"})
    headers = {"x-atp-user": "alice", "x-atp-tags": "env=test,cost=42", "x-request-id": "r-1"}
    response = await client.post(CHAT, json=body, headers=headers)
    assert response.status_code == 200, response.text
    sent = adapters[1].requests[0]
    assert (sent.request_id, sent.tenant, sent.dialect, sent.end_user) == ("r-1", "local", "chat", "alice")
    assert sent.key_id
    # The header's pairs win over the body's metadata; both are recorded.
    assert dict(sent.tags) == {"team": "search", "env": "test", "cost": "42"}
    assert dict(sent.params.metadata) == {"team": "search", "env": "prod"}
    await client.post(CHAT, json=_body(safety_identifier="hashed-9"))
    assert adapters[1].requests[1].end_user == "hashed-9"


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"x-atp-tags": "novalue"}, "x-atp-tags"),
        ({"x-atp-tags": ",".join(f"k{i}=v" for i in range(17))}, "x-atp-tags"),
        ({"x-atp-tags": "k=" + "v" * 257}, "x-atp-tags"),
        ({"x-atp-user": "u" * 257}, "x-atp-user"),
    ],
)
async def test_bad_headers_are_a_400_naming_them(client, headers, param):
    response = await client.post(CHAT, json=_body(), headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


async def test_legacy_functions_become_tools_and_come_back_as_function_call(client, adapters):
    body = _body(model="tools", functions=FUNCTIONS, function_call={"name": "get_weather"})
    body["messages"] += [
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    ChatCompletion.model_validate(response.json(), strict=True)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert "tool_calls" not in choice["message"]
    sent = adapters[1].requests[0]
    assert [(t.type, t.name) for t in sent.params.tools] == [("function", "get_weather")]
    assert (sent.params.tool_choice.mode, sent.params.tool_choice.name) == ("function", "get_weather")
    assistant, result = sent.messages[1], sent.messages[2]
    assert assistant.tool_calls[0].id == result.tool_call_id == "call_get_weather"
    assert (result.role, result.content) == ("tool", "sunny")
    streamed = await client.post(CHAT, json={**body, "stream": True})
    chunks = _chunks(streamed.content)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk, strict=True)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    assert any("function_call" in c["choices"][0]["delta"] for c in chunks if c["choices"])


def _everything() -> dict:
    """A request with every role, part type and the rarer parameters."""
    body = _body(
        tools=[
            {
                "type": "function",
                "function": {"name": "f", "strict": True},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}},
        ],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": [{"type": "custom", "custom": {"name": "sql"}}]},
        },
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        prediction={"type": "content", "content": [{"type": "text", "text": "draft"}]},
        web_search_options={"search_context_size": "low"},
        modalities=["text", "audio"],
        audio={"voice": {"id": "voice_1"}, "format": "mp3"},
    )
    body["messages"] = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "dev", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "look",
                    "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "12h"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "no"}],
            "refusal": "no",
            "audio": {"id": "audio_1"},
            "tool_calls": [{"id": "c9", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}],
        },
        {"role": "tool", "tool_call_id": "c9", "content": [{"type": "text", "text": "1"}]},
    ]
    return body


async def test_every_part_and_role_reaches_the_typed_request(client, adapters):
    body = _everything()
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    sent = adapters[1].requests[0]
    developer, user, assistant, tool = sent.messages
    assert developer.parts[0].text == "dev" and developer.parts[0].cache_control.ttl == "1h"
    assert (user.parts[0].cache_control.type, user.parts[0].cache_control.ttl) == ("explicit", "12h")
    assert (user.parts[1].image.url, user.parts[1].image.detail) == ("data:image/png;base64,AAAA", "low")
    assert (user.parts[2].audio.data, user.parts[2].audio.format) == ("UklGRg==", "wav")
    assert (user.parts[3].file.filename, user.parts[3].file.file_data[:20]) == (
        "a.pdf",
        "data:application/pdf",
    )
    assert (
        assistant.parts[0].refusal == "no" and assistant.refusal == "no" and assistant.audio_id == "audio_1"
    )
    assert (assistant.tool_calls[0].type, assistant.tool_calls[0].arguments) == ("custom", "select 1")
    assert tool.parts[0].text == "1" and tool.tool_call_id == "c9"


async def test_the_rarer_parameters_reach_the_typed_request(client, adapters):
    response = await client.post(CHAT, json=_everything())
    assert response.status_code == 200, response.text
    sent = adapters[1].requests[0]
    params = sent.params
    assert params.tools[0].strict and params.tools[0].cache_control.type == "ephemeral"
    assert (params.tools[1].type, orjson.loads(params.tools[1].format_json)) == ("custom", {"type": "text"})
    assert (params.tool_choice.mode, list(params.tool_choice.allowed)) == ("allowed_tools", ["sql"])
    assert params.response_format.name == "out" and params.response_format.strict
    assert params.prediction.parts[0].text == "draft"
    assert orjson.loads(params.openai_options["web_search_options"]) == {"search_context_size": "low"}
    assert list(params.modalities) == ["text", "audio"] and params.audio.voice == "voice_1"


@pytest.mark.parametrize(
    ("extra", "messages", "param"),
    [
        (
            {},
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            {},
            [{"role": "user", "content": [{"type": "file", "file": {"filename": "a"}}]}],
            "messages[0].content[0].file",
        ),
        ({}, [{"role": "user", "content": [{"type": "video"}]}], "messages[0].content[0].type"),
        (
            {},
            [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}],
            "messages[0].content[0].type",
        ),
        ({}, [{"role": "assistant"}], "messages[0].content"),
        ({}, [{"role": "user", "content": "x", "name": ""}], "messages[0].name"),
        ({"logit_bias": {"abc": 1}}, None, "logit_bias.abc"),
        ({"modalities": ["audio"]}, None, "audio"),
        ({"tool_choice": "auto"}, None, "tool_choice"),
        (
            {"functions": FUNCTIONS, "tools": [{"type": "function", "function": {"name": "g"}}]},
            None,
            "functions",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "g"}}],
                "tool_choice": {"type": "function", "function": {"name": "h"}},
            },
            None,
            "tool_choice",
        ),
        ({"reasoning_effort": "extreme"}, None, "reasoning_effort"),
        (
            {"stream": True, "stream_options": {"include_obfuscation": True}},
            None,
            "stream_options.include_obfuscation",
        ),
        ({"metadata": {"k": 1}}, None, "metadata.k"),
    ],
)
async def test_bad_chat_input_is_a_400_naming_the_path(client, extra, messages, param):
    body = _body(**extra)
    if messages is not None:
        body["messages"] = messages
    response = await client.post(CHAT, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_websocket_requests_are_stamped_from_the_upgrade_headers(live, adapters, api_key):
    headers = {"authorization": f"Bearer {api_key}", "x-atp-user": "bob", "x-atp-tags": "via=ws"}
    async with websockets.connect(f"ws://127.0.0.1:{live.port}/v1/ws", additional_headers=headers) as ws:
        await ws.send(
            orjson.dumps({"type": "request", "id": "w1", "body": _body(metadata={"k": "v"})}).decode()
        )
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert frames[-1]["type"] == "done", frames[-1]
    ChatCompletion.model_validate(frames[-1]["response"], strict=True)
    sent = adapters[1].requests[0]
    assert (sent.request_id, sent.dialect, sent.end_user) == ("w1", "chat", "bob")
    assert dict(sent.tags) == {"k": "v", "via": "ws"}


async def test_null_optional_parameters_mean_unset(client, adapters):
    nulls = dict.fromkeys(
        (
            "tools",
            "tool_choice",
            "functions",
            "function_call",
            "parallel_tool_calls",
            "response_format",
            "user",
        ),
        None,
    )
    response = await client.post(CHAT, json=_body(**nulls, web_search_options=None, logprobs=None, n=None))
    assert response.status_code == 200, response.text
    sent = adapters[1].requests[0].params
    assert not sent.tools and not sent.HasField("tool_choice") and not sent.HasField("parallel_tool_calls")
    assert not sent.openai_options and not sent.HasField("n") and not sent.HasField("logprobs")
    assert "function_call" not in response.json()["choices"][0]["message"]


def test_custom_tool_calls_keep_their_shape_streamed_and_whole():
    header = adapters_pb2.GenerateHeader(decision_id="d", model="m", created=1)
    first = chat_pb2.Delta(
        tool_calls=[chat_pb2.ToolCallDelta(index=0, id="c", type="custom", function_name="sql")]
    )
    rest = chat_pb2.Delta(tool_calls=[chat_pb2.ToolCallDelta(index=0, arguments="select 1")])
    encoder = ChatEncoder(False)
    encoder.start(header)
    streamed = [orjson.loads(encoder.deltas([d])[6:]) for d in (first, rest)]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in streamed]
    assert calls == [
        {"index": 0, "id": "c", "type": "custom", "custom": {"name": "sql", "input": ""}},
        {"index": 0, "custom": {"input": "select 1"}},
    ]
    completion = adapters_pb2.GenerateCompletion(finish_reason=adapters_pb2.FINISH_REASON_TOOL_CALLS)
    whole = orjson.loads(
        ChatEncoder(False).whole(
            adapters_pb2.GenerateResponse(header=header, deltas=[first, rest], completion=completion)
        )
    )
    ChatCompletion.model_validate(whole, strict=True)
    assert whole["choices"][0]["message"]["tool_calls"] == [
        {"id": "c", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}
    ]


@pytest.mark.parametrize("model", ["metered", "metered-legacy"])
@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limit_values_become_headers_from_the_header_or_older_adapters_metadata(
    client, adapters, model, stream
):
    """The adapters put x-ratelimit-* values in the reply's header; adapters from before that field sent
    them as metadata (initial for a stream, trailing for a unary call), read until 2027-03-01. Those
    adapters lacked Multiplex too."""
    from tests.support.gateway_fixtures import METERED

    adapters[1].multiplex = model != "metered-legacy"

    response = await client.post(CHAT, json=_body(model, stream=stream))
    assert response.status_code == 200, response.text
    assert {k: response.headers.get(k) for k in METERED} == METERED
    plain = await client.post(CHAT, json=_body("auto", stream=stream))
    assert not any(k.startswith("x-ratelimit-") for k in plain.headers)
