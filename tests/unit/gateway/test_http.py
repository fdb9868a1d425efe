"""The HTTP API through httpx's ASGITransport against a real fake-adapters gRPC server."""

from __future__ import annotations

import json
import socket

import httpx
import orjson
import pytest

from atp.adapters.v1 import adapters_pb2
from atp_gateway.app import create_app
from atp_gateway.settings import GatewaySettings

CHAT = "/v1/chat/completions"


def _body(model: str = "auto", text: str = "hello there world", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return [event for event in raw.split(b"\n\n") if event]


def _assert_openai_error(response, status: int, *, error_type: str | None = None, param=..., code=...):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    if error_type is not None:
        assert body["error"]["type"] == error_type
    if param is not ...:
        assert body["error"]["param"] == param
    if code is not ...:
        assert body["error"]["code"] == code
    return body["error"]


async def test_chat_completion(client, adapters):
    response = await client.post(CHAT, json=_body(), headers={"x-request-id": "req-123"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "local-small"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: hello there world",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 12
    assert response.headers["x-atp-model"] == "local-small"
    assert response.headers["x-atp-decision-id"] == "dec-1"
    assert body["id"] == "chatcmpl-dec-1"
    assert response.headers["x-request-id"] == "req-123"
    sent = adapters[1].requests[0]
    assert (sent.request_id, sent.tenant, sent.model, sent.stream) == ("req-123", "local", "auto", False)


async def test_request_translation_to_generate(client, adapters):
    body = _body(
        temperature=0.3,
        top_p=0.9,
        max_completion_tokens=50,
        stop="END",
        seed=7,
        user="u1",
        presence_penalty=0.5,
        response_format={"type": "json_object"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto",
    )
    body["messages"] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": "and now?"},
    ]
    assert (await client.post(CHAT, json=body)).status_code == 200
    sent = adapters[1].requests[0]
    params = sent.params
    assert params.temperature == pytest.approx(0.3) and params.top_p == pytest.approx(0.9)
    assert params.max_tokens == 50 and list(params.stop) == ["END"] and params.seed == 7
    assert params.user == "u1" and params.presence_penalty == 0.5
    assert not params.HasField("frequency_penalty")
    assert params.response_format.type == "json_object"
    assert params.tool_choice.mode == "auto"
    assert params.tools[0].name == "f" and orjson.loads(params.tools[0].parameters_json) == {"type": "object"}
    messages = sent.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert [p.text for p in messages[1].parts] == ["hi"] and not messages[1].content
    assert messages[2].tool_calls[0].function_name == "f" and messages[3].tool_call_id == "c1"


async def test_stream_sse_format_and_text_equals_non_streamed(client):
    plain = (await client.post(CHAT, json=_body(text="one two three four five"))).json()
    response = await client.post(CHAT, json=_body(text="one two three four five", stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-atp-model"] == "local-small"
    assert response.headers["x-atp-decision-id"]
    events = _events(response.content)
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"local-small"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]
    # Deltas are coalesced: the fake sends two per message, so fewer events than words.
    assert len(chunks) < 2 + len(text.split())


async def test_stream_include_usage_ends_with_usage_chunk(client, adapters):
    body = _body(stream=True, stream_options={"include_usage": True})
    response = await client.post(CHAT, json=body)
    events = _events(response.content)
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 7 and chunks[-1]["usage"]["total_tokens"] == 12
    assert all(c["usage"] is None for c in chunks[:-1])
    assert adapters[1].requests[0].include_usage


async def test_tool_calls_non_streamed_and_streamed(client):
    response = await client.post(CHAT, json=_body(model="tools"))
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    events = _events((await client.post(CHAT, json=_body(model="tools", stream=True))).content)
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    fragments = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":'},
    }
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("model", ["midstream-error", "midstream-abort"])
async def test_midstream_error_is_an_error_event_without_done(client, model):
    response = await client.post(CHAT, json=_body(model=model, stream=True))
    assert response.status_code == 200
    events = _events(response.content)
    assert b"data: [DONE]" not in events
    assert orjson.loads(events[1][6:])["choices"][0]["delta"] == {"content": "partial "}
    error = orjson.loads(events[-1][6:])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] in ("upstream_error", "unavailable")
    assert error["message"] in ("provider stream cut", "provider connection reset")


async def test_midstream_error_on_non_streamed_request_is_an_http_error(client):
    response = await client.post(CHAT, json=_body(model="midstream-error"))
    _assert_openai_error(response, 502, error_type="upstream_error")


async def test_api_key_headers(client, api_key):
    for headers in ({"authorization": ""}, {"authorization": "Basic abc"}):
        response = await client.post(CHAT, json=_body(), headers=headers)
        _assert_openai_error(response, 401, code="invalid_api_key")
    response = await client.post(CHAT, json=_body(), headers={"authorization": "Bearer sk-wrong"})
    error = _assert_openai_error(response, 401, code="invalid_api_key")
    assert "sk-wrong" not in response.text and api_key not in error["message"]
    for name in ("api-key", "x-api-key"):
        response = await client.post(CHAT, json=_body(), headers={"authorization": "", name: api_key})
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "status", "param", "fragment"),
    [
        (b'{"model": "auto", "messages": [', 400, None, "parse the JSON"),
        (b"[1, 2]", 400, None, "JSON object"),
        (b"", 400, None, "parse the JSON"),
        (b'{"model": "auto"}', 400, "messages", "Missing required parameter"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model", "Missing"),
        (b'{"model": "auto", "messages": []}', 400, "messages", "Invalid value"),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}',
            400,
            "frobnicate",
            "Unrecognized request argument",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}',
            400,
            "top_logprobs",
            "logprobs",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x", "colour": 1}]}',
            400,
            "messages[0].colour",
            "Unrecognized",
        ),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "n", "'n'"),
        # A list of too many stop sequences is a list too long, not a string that is not one.
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}',
            400,
            "stop",
            "at most 4 items",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            400,
            "temperature",
            "Invalid value",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}',
            400,
            "max_tokens",
            "Invalid value",
        ),
        (b'{"model": "auto", "messages": [{"role": "robot", "content": "x"}]}', 400, "messages[0].role", ""),
        (b'{"model": "auto", "messages": [{"role": "user"}]}', 400, "messages[0].content", "Missing"),
        (
            b'{"model": "auto", "messages": [{"role": "tool", "content": "x"}]}',
            400,
            "messages[0].tool_call_id",
            "Missing",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}',
            400,
            "stream_options",
            "stream",
        ),
    ],
)
async def test_bad_requests(client, adapters, content, status, param, fragment):
    response = await client.post(CHAT, content=content, headers={"content-type": "application/json"})
    error = _assert_openai_error(response, status, error_type="invalid_request_error", param=param)
    assert fragment in error["message"]
    assert adapters[1].requests == []


async def test_unknown_model_is_openai_model_not_found(client):
    response = await client.post(CHAT, json=_body(model="gpt-nonexistent"))
    error = _assert_openai_error(
        response, 404, error_type="invalid_request_error", param="model", code="model_not_found"
    )
    assert "gpt-nonexistent" in error["message"]
    response = await client.post(CHAT, json=_body(model="gpt-nonexistent", stream=True))
    _assert_openai_error(response, 404, code="model_not_found")


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("limited", 429, "rate_limit_exceeded"),
        ("forbidden", 403, "permission_denied"),
        ("down", 503, "unavailable"),
    ],
)
async def test_upstream_statuses_map_through_the_table(client, model, status, code):
    response = await client.post(CHAT, json=_body(model=model, stream=True))
    _assert_openai_error(response, status, code=code)
    if model == "limited":
        assert response.headers["retry-after"] == "3"


async def test_upstream_bug_is_a_500_without_internals(client):
    response = await client.post(CHAT, json=_body(model="boom"))
    error = _assert_openai_error(response, 500, error_type="server_error")
    assert error["message"] == "internal error"
    assert "hunter2" not in response.text


async def test_oversized_body_is_413_with_and_without_content_length(client, adapters):
    big = orjson.dumps(_body(text="x" * 70_000))
    response = await client.post(CHAT, content=big, headers={"content-type": "application/json"})
    _assert_openai_error(response, 413, error_type="invalid_request_error")

    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    _assert_openai_error(response, 413)
    assert adapters[1].requests == []


async def test_unknown_path_and_wrong_method_are_openai_errors(client):
    _assert_openai_error(await client.get("/v1/nothing"), 404, code="not_found")
    _assert_openai_error(await client.get(CHAT), 405, code="method_not_allowed")


async def test_models_listed_and_cached(client, adapters):
    first = await client.get("/v1/models")
    second = await client.get("/v1/models")
    assert first.status_code == 200 and first.content == second.content
    body = first.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["auto", "local-small"]
    assert body["data"][1] == {
        "id": "local-small",
        "object": "model",
        "created": 0,
        "owned_by": "local",
        "kind": "model",
        "context_window": 32768,
        "capabilities": [],
    }
    assert adapters[1].list_models_calls == 1
    # The list is the calling key's tenant's (the adapters apply its allowed and denied models).
    asked = adapters[1].list_models_requests[0]
    assert asked.tenant == "local" and asked.key_id
    one = await client.get("/v1/models/local-small")
    assert one.status_code == 200 and one.json() == body["data"][1]
    _assert_openai_error(await client.get("/v1/models/gpt-9"), 404, code="model_not_found")
    _assert_openai_error(await client.get("/v1/models", headers={"authorization": ""}), 401)


async def test_feedback_reaches_the_observer(client, observer):
    body = {"decision_id": "dec-9", "score": 0.75, "label": "good", "comment": "nice"}
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == 200
    assert response.json() == {"id": "fb-1", "object": "feedback", "decision_id": "dec-9", "joined": True}
    stored = observer[1].feedback[0]
    assert (stored.decision_id, stored.tenant, stored.score, stored.label, stored.comment) == (
        "dec-9",
        "local",
        0.75,
        "good",
        "nice",
    )
    _assert_openai_error(await client.post("/v1/feedback", json={**body, "score": 1.5}), 400, param="score")
    _assert_openai_error(await client.post("/v1/feedback", json={"score": 1}), 400, param="decision_id")
    _assert_openai_error(
        await client.post("/v1/feedback", json={**body, "decision_id": "missing-1"}),
        404,
        param="decision_id",
    )
    _assert_openai_error(await client.post("/v1/feedback", json={**body, "decision_id": "other-1"}), 403)
    _assert_openai_error(await client.post("/v1/feedback", json=body, headers={"authorization": ""}), 401)


async def test_probes(client, adapters):
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/startupz")).status_code == 200
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["adapters"] == "serving"


async def test_readyz_follows_the_adapters(settings, config, adapters, wait_for):
    app = create_app(settings, config=config)
    gateway = app.state.gateway
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            await wait_for(lambda: gateway.ready, what="ready")
            assert (await http.get("/readyz")).status_code == 200
            # The adapters drain: NOT_SERVING reaches the gateway over the health watch.
            await adapters[0].drain()
            await wait_for(lambda: not gateway.ready, what="not ready")
            response = await http.get("/readyz")
            assert response.status_code == 503 and response.json() == {"status": "not ready"}
            assert (await http.get("/healthz")).json()["adapters"] == "not serving"


async def test_readyz_is_503_before_the_adapters_are_reachable(observer, config, api_key):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    app = create_app(
        GatewaySettings(port=0, metrics_port=None, adapters_addr=dead, observer_addr=observer[0].address),
        config=config,
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/livez")).status_code == 200
            response = await http.post(CHAT, json=_body(), headers={"authorization": f"Bearer {api_key}"})
            _assert_openai_error(response, 503)


def test_openapi_declares_the_request_schema(settings, config):
    schema = create_app(settings, config=config).openapi()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["model", "messages"]
    assert body["additionalProperties"] is False
    assert "UserMessage" in schema["components"]["schemas"]
    assert {"400", "401", "404", "413"} <= set(operation["responses"])
    assert adapters_pb2.FINISH_REASON_STOP  # the stubs the gateway speaks are importable


async def test_pass_through_json_keeps_integers_beyond_64_bits(client, adapters):
    # Found by schemathesis: orjson refuses such integers; the request is valid JSON and must pass as is.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"maximum": 10**30}}}]
    content = json.dumps(_body(tools=tools)).encode()
    response = await client.post(CHAT, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert json.loads(adapters[1].requests[0].params.tools[0].parameters_json) == {"maximum": 10**30}
