"""The gateway in front of the real adapters service (local provider), over real gRPC and a real socket."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest
import websockets

from tests.support.stack import adapters_and_gateway


@pytest.fixture
async def real_gateway(config, observer, tmp_path):
    async with adapters_and_gateway(config, tmp_path, observer_addr=observer[0].address) as gateway:
        yield gateway


async def test_openai_sdk_through_the_real_adapters(real_gateway, api_key):
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{real_gateway.port}/v1", api_key=api_key, max_retries=0, timeout=10
    ) as sdk:
        messages = [{"role": "user", "content": "route me through the real adapters please"}]
        raw = await sdk.chat.completions.with_raw_response.create(model="auto", messages=messages)
        completion = raw.parse()
        text = completion.choices[0].message.content
        assert text and "route me through the real adapters please" in text
        assert completion.model == raw.headers["x-atp-model"]
        assert completion.model in ("local-small", "local-large")
        assert raw.headers["x-atp-decision-id"]
        stream = await sdk.chat.completions.create(
            model="auto", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        pieces, usage = [], None
        async for chunk in stream:
            usage = chunk.usage or usage
            pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        assert "".join(pieces) == text
        assert usage is not None and usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.chat.completions.create(model="no-such-model", messages=messages)
        assert caught.value.code == "model_not_found"
        ids = {m.id for m in (await sdk.models.list()).data}
        assert {"auto", "local-small", "local-large"} <= ids


async def test_websocket_through_the_real_adapters(real_gateway, api_key):
    async with websockets.connect(
        f"ws://127.0.0.1:{real_gateway.port}/v1/ws",
        additional_headers={"authorization": f"Bearer {api_key}"},
    ) as ws:
        for request_id in ("one", "two"):
            body = {"model": "local-large", "messages": [{"role": "user", "content": f"hi {request_id}"}]}
            await ws.send(orjson.dumps({"type": "request", "id": request_id, "body": body}).decode())
        done: dict[str, dict] = {}
        deltas: dict[str, str] = {"one": "", "two": ""}
        while len(done) < 2:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["type"] in ("delta", "done"), frame
            if frame["type"] == "delta":
                deltas[frame["id"]] += frame["delta"].get("content", "")
            else:
                done[frame["id"]] = frame
        for request_id, frame in done.items():
            assert frame["model"] == "local-large"
            assert frame["response"]["choices"][0]["message"]["content"] == deltas[request_id]
            assert f"hi {request_id}" in deltas[request_id]
