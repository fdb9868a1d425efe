"""The gateway under a real uvicorn on loopback: the openai SDK, WebSockets and disconnects
(schemathesis on it is in tests/e2e/gateway/test_schemathesis.py)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import openai
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed


def _messages(text: str = "the quick brown fox") -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def sdk(live, api_key):
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key=api_key, max_retries=0, timeout=10
    )
    yield client
    await client.close()


async def test_openai_sdk_completion_and_stream(sdk):
    completion = await sdk.chat.completions.create(model="auto", messages=_messages())
    assert completion.model == "local-small"
    text = completion.choices[0].message.content
    assert text == "echo: the quick brown fox"
    stream = await sdk.chat.completions.create(
        model="auto", messages=_messages(), stream=True, stream_options={"include_usage": True}
    )
    pieces, usage, models = [], None, set()
    async for chunk in stream:
        models.add(chunk.model)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    assert "".join(pieces) == text
    assert models == {"local-small"}
    assert usage is not None and usage.total_tokens == 12


async def test_openai_sdk_headers_and_errors(sdk):
    raw = await sdk.chat.completions.with_raw_response.create(model="auto", messages=_messages())
    assert raw.headers["x-atp-model"] == "local-small"
    assert raw.headers["x-atp-decision-id"].startswith("dec-")
    assert raw.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="no-such-model", messages=_messages())
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.chat.completions.create(model="auto", messages=_messages(), n=0)
    assert bad.value.param == "n"
    with pytest.raises(openai.AuthenticationError):
        await sdk.with_options(api_key="sk-wrong").chat.completions.create(model="auto", messages=_messages())
    models = await sdk.models.list()
    assert [m.id for m in models.data] == ["auto", "local-small"]


async def test_openai_sdk_stream_tool_calls(sdk):
    stream = await sdk.chat.completions.create(
        model="tools",
        messages=_messages(),
        stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    arguments, names, finish = "", set(), None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                arguments += call.function.arguments or ""
                if call.function.name:
                    names.add(call.function.name)
    assert (arguments, names, finish) == ('{"city":"Paris"}', {"get_weather"}, "tool_calls")


async def test_client_disconnect_cancels_the_upstream_call(live, adapters, api_key):
    servicer = adapters[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}", timeout=10) as http:
        request = http.build_request(
            "POST",
            "/v1/chat/completions",
            json={"model": "hang", "messages": _messages(), "stream": True},
            headers={"authorization": f"Bearer {api_key}"},
        )
        response = await http.send(request, stream=True)
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if "tick" in line:
                break
        await asyncio.wait_for(servicer.hanging.wait(), 5)
        assert not servicer.cancelled.is_set()
        await response.aclose()
    # The fake is parked in a 30 s sleep: only a cancelled call ends it this quickly.
    await asyncio.wait_for(servicer.cancelled.wait(), 5)


async def test_client_disconnect_cancels_a_non_streamed_call(live, adapters, api_key):
    servicer = adapters[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}", timeout=10) as http:
        reply = asyncio.create_task(
            http.post(
                "/v1/chat/completions",
                json={"model": "hang", "messages": _messages()},
                headers={"authorization": f"Bearer {api_key}"},
            )
        )
        # The Complete call is in the adapters, parked after its first delta; the client gives up.
        await asyncio.wait_for(servicer.hanging.wait(), 5)
        assert not servicer.cancelled.is_set()
        reply.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reply
    # The fake is parked in a 30 s sleep: only a cancelled call ends it this quickly.
    await asyncio.wait_for(servicer.cancelled.wait(), 5)


async def _ws(live, api_key):
    return await websockets.connect(
        f"ws://127.0.0.1:{live.port}/v1/ws",
        additional_headers={"authorization": f"Bearer {api_key}"},
        open_timeout=5,
    )


async def _recv(ws) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_websocket_two_concurrent_requests_and_a_cancelled_third(live, adapters, api_key):
    servicer = adapters[1]
    async with await _ws(live, api_key) as ws:

        def request(request_id: str, model: str, text: str) -> str:
            body = {"model": model, "messages": _messages(text)}
            return orjson.dumps({"type": "request", "id": request_id, "body": body}).decode()

        await ws.send(request("c", "hang", "wait"))
        await ws.send(request("a", "auto", "alpha one two three"))
        await ws.send(request("b", "local-large", "beta four five six"))
        frames: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
        done: dict[str, dict] = {}
        while len(done) < 2 or not frames["c"]:
            frame = await _recv(ws)
            frames[frame["id"]].append(frame)
            if frame["type"] == "done":
                done[frame["id"]] = frame
        await asyncio.wait_for(servicer.hanging.wait(), 5)
        await ws.send(orjson.dumps({"type": "cancel", "id": "c"}).decode())
        frame = await _recv(ws)
        while frame["id"] != "c" or frame["type"] != "cancelled":
            assert frame["id"] == "c" and frame["type"] == "delta"
            frame = await _recv(ws)
        await asyncio.wait_for(servicer.cancelled.wait(), 5)

        for request_id, text in (("a", "echo: alpha one two three"), ("b", "echo: beta four five six")):
            deltas = [f["delta"]["content"] for f in frames[request_id] if f["type"] == "delta"]
            assert "".join(deltas) == text
            final = done[request_id]
            assert final["response"]["object"] == "chat.completion"
            assert final["response"]["choices"][0]["message"]["content"] == text
            assert final["decision_id"].startswith("dec-")
            assert frames[request_id][-1] is final
        assert done["b"]["model"] == "local-large" and done["a"]["model"] == "local-small"
        # The socket stays usable after a cancel, and the id can be reused.
        await ws.send(request("c", "auto", "again"))
        frames_c = [await _recv(ws)]
        while frames_c[-1]["type"] != "done":
            frames_c.append(await _recv(ws))
        assert frames_c[-1]["response"]["choices"][0]["message"]["content"] == "echo: again"


async def test_websocket_errors_are_per_request_frames(live, api_key):
    async with await _ws(live, api_key) as ws:
        await ws.send("{not json")
        frame = await _recv(ws)
        assert frame["type"] == "error" and frame["id"] is None and frame["status"] == 400
        await ws.send(
            orjson.dumps({"type": "request", "id": "x", "body": {"model": "nope", "messages": _messages()}})
        )
        frame = await _recv(ws)
        assert (frame["type"], frame["id"], frame["status"]) == ("error", "x", 404)
        assert frame["error"]["code"] == "model_not_found"
        await ws.send(orjson.dumps({"type": "request", "id": "y", "body": {"model": "auto"}}))
        frame = await _recv(ws)
        assert (frame["id"], frame["error"]["param"]) == ("y", "messages")
        await ws.send(
            orjson.dumps(
                {
                    "type": "request",
                    "id": "z",
                    "body": {"model": "auto", "messages": _messages(), "stream": False},
                }
            )
        )
        frame = await _recv(ws)
        assert frame["type"] == "done", "stream false: no deltas, only the reply"
        for i in range(5):
            body = {"model": "hang", "messages": _messages()}
            await ws.send(orjson.dumps({"type": "request", "id": f"h{i}", "body": body}))
        frames = [await _recv(ws) for _ in range(5)]
        refused = [f for f in frames if f["type"] == "error"]
        assert len(refused) == 1 and refused[0]["status"] == 429 and refused[0]["id"] == "h4"
        await ws.send(
            orjson.dumps({"type": "request", "id": "h0", "body": {"model": "auto", "messages": _messages()}})
        )
        frame = await _recv(ws)
        assert (frame["id"], frame["error"]["param"]) == ("h0", "id")


async def test_websocket_without_key_gets_an_error_then_1008(live):
    async with websockets.connect(f"ws://127.0.0.1:{live.port}/v1/ws", open_timeout=5) as ws:
        frame = await _recv(ws)
        assert frame["status"] == 401 and frame["error"]["code"] == "invalid_api_key"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
