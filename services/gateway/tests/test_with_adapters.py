"""The gateway in front of the real adapters service (local provider), over real gRPC and a real socket."""

from __future__ import annotations

import asyncio
import socket

import openai
import orjson
import pytest
import websockets

from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings


def _free_address() -> str:
    # A port nobody listens on: the router is absent, so the adapters route on the configured order.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def real_gateway(config, observer, tmp_path, wait_for):
    adapters = await build_server(
        AdaptersSettings(
            port=0,
            metrics_port=None,
            router_addr=_free_address(),
            observer_addr=observer[0].address,
            spool_dir=str(tmp_path / "spool"),
            drain_delay_s=0,
            grace_s=1,
        ),
        config=config,
    )
    settings = GatewaySettings(
        port=0,
        metrics_port=None,
        adapters_addr=adapters.address,
        observer_addr=observer[0].address,
        drain_delay_s=0,
        grace_s=2,
    )
    gateway = GatewayServer(settings, create_app(settings, config=config))
    await gateway.start()
    try:
        await wait_for(lambda: gateway.gateway.ready, what="gateway ready")
        yield gateway
    finally:
        await gateway.stop_now()
        await adapters.stop_now()


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
