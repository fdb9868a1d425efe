"""x-atp-overhead-ms and atp_gateway_overhead_seconds: one value, total time minus the provider's time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_common.config import builtin_config
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings
from atp_gateway.app import create_app
from atp_gateway.settings import GatewaySettings
from tests.fakes.adapters_contract import complete_from_generate

API_KEY = "atp-test-overhead-key"
ADAPTERS_SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
# The fake adapters take this long and report part of it as the provider's time.
TOTAL_S = 0.2
PROVIDER_MS = 120.0


class SlowAdapters(adapters_pb2_grpc.AdaptersServiceServicer):
    """Answers after TOTAL_S, saying the provider took PROVIDER_MS of it."""

    async def Complete(self, request, context):
        return await complete_from_generate(self.Generate(request.request, context))

    async def Generate(self, request, context):
        await asyncio.sleep(TOTAL_S)
        yield adapters_pb2.GenerateResponse(
            header=adapters_pb2.GenerateHeader(
                decision_id="dec-1", model="m", provider="p", request_id=request.request_id, created=1
            ),
            deltas=[chat_pb2.Delta(role="assistant", content="hi")],
            completion=adapters_pb2.GenerateCompletion(
                finish_reason=adapters_pb2.FINISH_REASON_STOP,
                usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=1),
                provider_ms=PROVIDER_MS,
            ),
        )


@pytest.fixture
async def slow_adapters() -> AsyncIterator[RunningServer]:
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [
            ServiceRegistration(
                adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, SlowAdapters(), ADAPTERS_SERVICE
            )
        ],
    )
    yield server
    await server.stop_now()


def _overhead_sum(mode: str) -> float:
    return REGISTRY.get_sample_value("atp_gateway_overhead_seconds_sum", {"mode": mode}) or 0.0


async def _client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, config=builtin_config(local_api_key=API_KEY))
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 5
        while not app.state.gateway.ready:
            assert time.monotonic() < deadline, "gateway not ready"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=10,
        ) as http:
            yield http


def _settings(adapters: RunningServer, **extra) -> GatewaySettings:
    return GatewaySettings(
        port=0, metrics_port=None, adapters_addr=adapters.address, observer_addr=adapters.address, **extra
    )


BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize("tracing", [False, True], ids=["fast-path", "fastapi-path"])
async def test_json_reply_carries_the_overhead_the_metric_records(slow_adapters, tracing):
    async for http in _client(_settings(slow_adapters, tracing=tracing)):
        before = _overhead_sum("json")
        sent = time.perf_counter()
        response = await http.post("/v1/chat/completions", json=BODY)
        elapsed_ms = (time.perf_counter() - sent) * 1000
        assert response.status_code == 200, response.text
        header_ms = float(response.headers["x-atp-overhead-ms"])
        recorded_s = _overhead_sum("json") - before
        # At least the time the fake adapters spent beside the provider, and the provider's time is not in
        # it: the client saw the whole call take longer than the overhead plus the provider's time.
        assert TOTAL_S * 1000 - PROVIDER_MS <= header_ms <= elapsed_ms - PROVIDER_MS
        # The header and the metric are the same value (the header rounds to the microsecond).
        assert abs(recorded_s * 1000 - header_ms) < 0.001
        assert response.json()["choices"][0]["message"]["content"] == "hi"


async def test_stream_records_the_overhead_without_the_header(slow_adapters):
    async for http in _client(_settings(slow_adapters)):
        before = _overhead_sum("sse")
        response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
        assert response.status_code == 200
        assert response.text.endswith("data: [DONE]\n\n")
        # The headers left with the first event, before the provider's total time was known.
        assert "x-atp-overhead-ms" not in response.headers
        assert (_overhead_sum("sse") - before) * 1000 >= TOTAL_S * 1000 - PROVIDER_MS


async def test_chat_skips_fastapi_only_without_tracing(slow_adapters):
    plain = create_app(_settings(slow_adapters), config=builtin_config(local_api_key=API_KEY))
    traced = create_app(_settings(slow_adapters, tracing=True), config=builtin_config(local_api_key=API_KEY))
    assert plain.chat_gateway is plain.state.gateway
    assert traced.chat_gateway is None
    # The route stays declared for the OpenAPI document either way.
    assert "/v1/chat/completions" in plain.openapi()["paths"]
