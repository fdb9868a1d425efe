"""One request's spans through gateway, adapters and provider (and the router's Route), in one trace."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common import telemetry
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, hash_api_key
from atp_common.server import RunningServer
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.fakes import FakeOpenAI

API_KEY = "atp-trace-" + "t" * 24
_EXPORTER = InMemorySpanExporter()
_PROCESSOR = SimpleSpanProcessor(_EXPORTER)


def _config(provider: FakeOpenAI) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"upstream": {"type": "openai", "base_url": provider.base_url}},
            "models": {
                "m-up": {
                    "provider": "upstream",
                    "provider_model": "upstream-model",
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 2.0,
                }
            },
            "routes": {"auto": {"candidates": ["m-up"], "policy": "static"}},
            "default_route": "auto",
            "tenants": {"acme": {"api_keys": [{"hash": hash_api_key(API_KEY), "name": "trace"}]}},
        }
    )


@dataclass
class Suite:
    gateway: GatewayServer
    router: RunningServer
    observer: RunningServer
    provider: FakeOpenAI
    base_url: str


@contextlib.asynccontextmanager
async def traced_suite(tmp_path: Path) -> AsyncIterator[Suite]:
    # Every server of this process shares the one tracer provider; the exporter sees all their spans.
    telemetry.setup_tracing("e2e-trace", extra_processor=_PROCESSOR)
    common = {"port": 0, "metrics_port": None, "tracing": True, "drain_delay_s": 0, "grace_s": 1}
    provider = FakeOpenAI()
    await provider.start()
    config = _config(provider)
    stack = contextlib.AsyncExitStack()
    async with stack:
        stack.push_async_callback(provider.stop)
        observer = await build_observer(
            ObserverSettings(**common, sqlite_path=str(tmp_path / "observer.sqlite3")), config=config
        )
        stack.push_async_callback(observer.stop_now)
        router = await build_router(RouterSettings(**common, observer_addr=observer.address), config=config)
        stack.push_async_callback(router.stop_now)
        adapters = await build_adapters(
            AdaptersSettings(
                **common,
                router_addr=router.address,
                observer_addr=observer.address,
                spool_dir=str(tmp_path / "spool"),
            ),
            config=config,
        )
        stack.push_async_callback(adapters.stop_now)
        gateway_settings = GatewaySettings(
            **common,
            adapters_addr=adapters.address,
            router_addr=router.address,
            observer_addr=observer.address,
        )
        gateway = GatewayServer(gateway_settings, create_app(gateway_settings, config=config))
        await gateway.start()
        stack.push_async_callback(gateway.stop_now)
        yield Suite(gateway, router, observer, provider, f"http://127.0.0.1:{gateway.port}")


async def _ready(client: httpx.AsyncClient) -> None:
    # The gateway turns ready once its health poll finds the adapters serving; poll with a deadline.
    for _ in range(200):
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the gateway did not become ready")


def _trace_of(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == trace_id]


async def _finished_spans(last: str, within_s: float = 5.0) -> list[ReadableSpan]:
    """The exported spans once the edge span and the gateway's client span of the call (named ending
    `last`) have ended: they end after the client has read the last byte, so they may lag the reply."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        spans = list(_EXPORTER.get_finished_spans())
        edge = any(s.kind == SpanKind.SERVER and s.name == "POST /v1/chat/completions" for s in spans)
        call = any(s.kind == SpanKind.CLIENT and s.name.endswith(last) for s in spans)
        if (edge and call) or asyncio.get_running_loop().time() > deadline:
            return spans
        await asyncio.sleep(0.01)


def _one(spans: list[ReadableSpan], predicate, what: str) -> ReadableSpan:
    found = [s for s in spans if predicate(s)]
    assert len(found) == 1, f"expected one {what}, got {[s.name for s in found]}"
    return found[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_one_trace_from_the_edge_to_the_provider_call(tmp_path, stream):
    async with traced_suite(tmp_path) as suite:
        headers = {"authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=suite.base_url, timeout=10) as client:
            await _ready(client)
            _EXPORTER.clear()
            body = {"model": "auto", "messages": [{"role": "user", "content": "trace me"}], "stream": stream}
            reply = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200, reply.text
            decision_id = reply.headers["x-atp-decision-id"]

        method = "AdaptersService/Generate" if stream else "AdaptersService/Complete"
        spans = await _finished_spans(f"/{method}")
        edge = _one(
            spans,
            lambda s: s.kind == SpanKind.SERVER and s.name == "POST /v1/chat/completions",
            "edge span",
        )
        assert edge.parent is None, "the edge span is the root of the request's trace"
        trace_id = edge.context.trace_id
        trace = _trace_of(spans, trace_id)
        by_id = {s.context.span_id: s for s in trace}

        # gateway → adapters (Generate for a stream, Complete otherwise): the gRPC client span under the
        # edge, the adapters' server span under it.
        generate_client = _one(
            trace, lambda s: s.kind == SpanKind.CLIENT and s.name.endswith(method), f"{method} client span"
        )
        generate_server = _one(
            trace, lambda s: s.kind == SpanKind.SERVER and s.name.endswith(method), f"{method} server span"
        )
        assert generate_server.parent.span_id == generate_client.context.span_id
        assert generate_server.attributes["atp.decision_id"] == decision_id
        assert generate_server.attributes["atp.tenant"] == "acme"

        # The routing decision and the provider call, with what an operator searches by.
        route = _one(trace, lambda s: s.name == "atp.route", "routing span")
        assert route.parent.span_id == generate_server.context.span_id
        assert route.attributes["atp.route"] == "auto"
        assert route.attributes["atp.model"] == "m-up"
        assert route.attributes["atp.decision_id"] == decision_id
        assert tuple(route.attributes["atp.candidates"]) == ("m-up",)
        call = _one(trace, lambda s: s.name == "provider upstream", "provider span")
        assert call.kind == SpanKind.CLIENT
        assert call.parent.span_id == generate_server.context.span_id
        assert call.attributes["atp.model"] == "m-up"
        assert call.attributes["atp.provider_model"] == "upstream-model"
        assert call.attributes["gen_ai.usage.input_tokens"] == suite.provider.reply.prompt_tokens
        assert call.attributes["gen_ai.usage.output_tokens"] == suite.provider.reply.completion_tokens
        assert call.attributes["atp.finish_reason"] == "stop"

        # Every span of the request descends from the edge span: one tree, one trace.
        for span in trace:
            node = span
            while node.parent is not None:
                node = by_id[node.parent.span_id]
            assert node is edge, f"{span.name} is not under the edge span"

        # The provider received the provider span's context as W3C traceparent.
        assert len(suite.provider.requests) == 1
        traceparent = suite.provider.requests[0].headers["traceparent"]
        version, sent_trace_id, parent_id, flags = traceparent.split("-")
        assert version == "00" and int(flags, 16) & 1, "sampled"
        assert int(sent_trace_id, 16) == trace_id
        assert int(parent_id, 16) == call.context.span_id

        # The stored observation names the trace, so an operator can go from it to these spans.
        observation = await _stored_observation(suite.observer.address)
        assert observation.decision.decision_id == decision_id
        assert observation.trace_id == format(trace_id, "032x")


async def _stored_observation(address: str) -> observer_pb2.Observation:
    """The one observation of tenant acme, once the adapters' shipper has delivered it."""
    async with open_channel(address) as channel:
        stub = observer_pb2_grpc.ObserverServiceStub(channel)
        for _ in range(200):
            reply = await stub.ListObservations(
                observer_pb2.ListObservationsRequest(tenant="acme", limit=10), timeout=5
            )
            if reply.observations:
                (observation,) = reply.observations
                return observation
            await asyncio.sleep(0.05)
    raise AssertionError("the observation never reached the observer")


async def test_route_continues_the_callers_trace(tmp_path):
    async with traced_suite(tmp_path) as suite:
        tracer = telemetry.tracer("atp.tests")
        settings = RouterSettings(port=0, tracing=True)
        async with open_channel(suite.router.address, settings) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            with tracer.start_as_current_span("caller") as caller:
                reply = await stub.Route(
                    router_pb2.RouteRequest(
                        tenant="acme",
                        model="auto",
                        messages=[chat_pb2.ChatMessage(role="user", content="route me")],
                    ),
                    timeout=5,
                )
        assert reply.decision.candidates[0].model == "m-up"
        trace = _trace_of(_EXPORTER.get_finished_spans(), caller.get_span_context().trace_id)
        server = _one(
            trace,
            lambda s: s.kind == SpanKind.SERVER and s.name.endswith("RouterService/Route"),
            "Route server span",
        )
        client = _one(trace, lambda s: s.kind == SpanKind.CLIENT, "Route client span")
        assert server.parent.span_id == client.context.span_id
        assert client.parent.span_id == caller.get_span_context().span_id
