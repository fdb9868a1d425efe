"""Every service's /metrics after real traffic, as four real processes: the issue's metrics with their labels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.config import hash_api_key
from tests.support.processes import ServiceProcess, running_services

pytestmark = pytest.mark.slow

ACME_KEY = "atp-metrics-acme-" + "a" * 20
LIMITED_KEY = "atp-metrics-limited-" + "b" * 20
ROUTE_PER_MINUTE = 2
GENERATE = "/atp.adapters.v1.AdaptersService/Generate"
COMPLETE = "/atp.adapters.v1.AdaptersService/Complete"
CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {
        "local-small": {
            "provider": "local",
            "input_usd_per_mtok": 1000.0,
            "output_usd_per_mtok": 2000.0,
            "context_window": 32768,
        },
        "local-large": {"provider": "local", "context_window": 131072},
    },
    "routes": {"auto": {"candidates": ["local-small", "local-large"], "policy": "static"}},
    "default_route": "auto",
    "tenants": {
        "acme": {"api_keys": [{"hash": hash_api_key(ACME_KEY), "name": "acme"}]},
        "limited": {
            "api_keys": [{"hash": hash_api_key(LIMITED_KEY), "name": "limited"}],
            "requests_per_minute": ROUTE_PER_MINUTE,
        },
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Iterator[dict[str, ServiceProcess]]:
    state = tmp_path_factory.mktemp("metrics")
    config = state / "atp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {
        "ATP_CONFIG": str(config),
        "ATP_OBSERVER_SQLITE_PATH": str(state / "observer.sqlite3"),
        "ATP_ADAPTERS_SPOOL_DIR": str(state / "spool"),
        "ATP_ADAPTERS_SHIP_INTERVAL_S": "0.05",
        **{f"ATP_{name}_METRICS_PORT": "0" for name in ("ROUTER", "OBSERVER", "ADAPTERS", "GATEWAY")},
        **{f"ATP_{name}_DRAIN_DELAY_S": "0" for name in ("ROUTER", "OBSERVER", "ADAPTERS", "GATEWAY")},
    }
    with running_services(["observer", "router", "adapters", "gateway"], env) as services:
        yield services


def _metrics_url(service: ServiceProcess) -> str:
    port = service.events("ready")[0]["metrics_port"]
    assert port, f"{service.name} serves no metrics"
    return f"http://127.0.0.1:{port}/metrics"


async def _scrape(client: httpx.AsyncClient, service: ServiceProcess) -> list[Sample]:
    reply = await client.get(_metrics_url(service))
    assert reply.status_code == 200
    return [s for family in text_string_to_metric_families(reply.text) for s in family.samples]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (0 when there is none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def _label_values(samples: list[Sample], prefix: str, label: str) -> set[str]:
    return {s.labels[label] for s in samples if s.name.startswith(prefix) and label in s.labels}


async def _eventually(
    client: httpx.AsyncClient, service: ServiceProcess, ready: Callable[[list[Sample]], bool]
) -> list[Sample]:
    # Counters of a request are updated as its handler ends, which can be just after the client got the
    # reply (and observations are shipped in batches): scrape again until they show, within a deadline.
    deadline = time.monotonic() + 10
    while True:
        samples = await _scrape(client, service)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


def _chat(stream: bool) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": "count these words"}], "stream": stream}


async def test_each_service_exposes_the_issue_metrics_after_traffic(suite):
    gateway = f"http://127.0.0.1:{suite['gateway'].port}"
    acme = {"authorization": f"Bearer {ACME_KEY}"}
    limited = {"authorization": f"Bearer {LIMITED_KEY}"}
    async with httpx.AsyncClient(timeout=10) as client:
        deadline = time.monotonic() + 20
        while (await client.get(f"{gateway}/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not become ready"
            await asyncio.sleep(0.05)

        # Traffic: replies as JSON and as SSE, a tenant over its request limit, and an internal caller
        # whose tenant the configuration does not name.
        ids: set[str] = set()
        for _ in range(2):
            reply = await client.post(f"{gateway}/v1/chat/completions", json=_chat(False), headers=acme)
            assert reply.status_code == 200, reply.text
            ids |= {reply.headers["x-atp-decision-id"], reply.headers["x-request-id"]}
        async with client.stream(
            "POST", f"{gateway}/v1/chat/completions", json=_chat(True), headers=acme
        ) as reply:
            assert reply.status_code == 200
            body = b"".join([chunk async for chunk in reply.aiter_bytes()])
        assert body.rstrip().endswith(b"data: [DONE]")
        statuses = [
            (
                await client.post(f"{gateway}/v1/chat/completions", json=_chat(False), headers=limited)
            ).status_code
            for _ in range(ROUTE_PER_MINUTE + 1)
        ]
        assert statuses == [200] * ROUTE_PER_MINUTE + [429]
        async with aio.insecure_channel(suite["adapters"].address) as channel:
            request = adapters_pb2.GenerateRequest(
                tenant="stranger-" + "x" * 8,
                model="auto",
                messages=[chat_pb2.ChatMessage(role="user", content="from inside")],
            )
            # Like many clients, it stops reading once it has the completion: still a served request.
            call = adapters_pb2_grpc.AdaptersServiceStub(channel).Generate(request, timeout=5)
            while not (await call.read()).HasField("completion"):
                pass
            call.cancel()
        async with aio.insecure_channel(suite["router"].address) as channel:
            decision = await router_pb2_grpc.RouterServiceStub(channel).Route(
                router_pb2.RouteRequest(tenant="acme", model="auto", messages=request.messages), timeout=5
            )
            assert decision.decision.candidates[0].model == "local-small"

        # The gateway: requests by endpoint and status, latency, and ATP's overhead per reply mode.
        edge = await _eventually(
            client,
            suite["gateway"],
            lambda s: _value(s, "atp_gateway_overhead_seconds_count", mode="sse") >= 1,
        )
        assert _value(edge, "atp_gateway_requests_total", endpoint="chat_completions", status="200") == 5
        assert _value(edge, "atp_gateway_requests_total", endpoint="chat_completions", status="429") == 1
        assert _value(edge, "atp_gateway_request_seconds_count", endpoint="chat_completions") == 6
        assert _value(edge, "atp_gateway_request_seconds_bucket", endpoint="chat_completions", le="+Inf") == 6
        assert _value(edge, "atp_gateway_overhead_seconds_count", mode="json") == 4
        assert _value(edge, "atp_gateway_overhead_seconds_count", mode="sse") == 1
        assert _value(edge, "atp_gateway_in_flight", transport="http") == 0

        # The adapters: outcomes, latency, time to first token, tokens and cost by tenant/route/model,
        # decisions by model, circuits, refusals, the observation queue and the per-method gRPC counts.
        served = 6  # 5 through the gateway + 1 internal
        data = await _eventually(
            client,
            suite["adapters"],
            lambda s: _value(s, "atp_adapters_requests_total", status="ok") >= served,
        )
        series = {"route": "auto", "model": "local-small"}
        assert _value(data, "atp_adapters_requests_total", **series, status="ok") == served
        assert _value(data, "atp_adapters_request_latency_seconds_count", **series) == served
        assert _value(data, "atp_adapters_time_to_first_token_seconds_count", **series) == served
        assert _value(data, "atp_adapters_overhead_seconds_count", route="auto") == served
        for tenant, count in (("acme", 3), ("limited", 2), ("other", 1)):
            for kind in ("prompt", "completion"):
                tokens = _value(data, "atp_adapters_tokens_total", tenant=tenant, **series, kind=kind)
                assert tokens >= count, (tenant, kind)
            assert _value(data, "atp_adapters_cost_usd_total", tenant=tenant, **series) > 0, tenant
        # Tenants the configuration does not name share one label: callers cannot grow the series.
        assert _label_values(data, "atp_adapters_", "tenant") == {"acme", "limited", "other"}
        # The refused request was decided on but never served.
        assert _value(data, "atp_adapters_decisions_total", **series) == served + 1
        assert _value(data, "atp_adapters_circuit_state", model="local-small") == 0
        assert _value(data, "atp_limits_refusals_total", kind="requests") == 1
        assert any(s.name == "atp_queue_depth" and s.labels == {"queue": "observations"} for s in data)
        # Per-method gRPC counts: the gateway's non-streamed requests use Complete (4 served, 1 refused),
        # the stream and the internal caller Generate. The internal caller cancels once it has the
        # completion: whether gRPC records that call as OK or CANCELLED depends on which end finishes
        # first, so count both.
        finished = sum(
            _value(data, "atp_grpc_requests_total", method=GENERATE, code=code)
            for code in ("OK", "CANCELLED")
        )
        assert finished == 2
        assert _value(data, "atp_grpc_requests_total", method=GENERATE, code="OK") >= 1
        assert _value(data, "atp_grpc_request_seconds_count", method=GENERATE) == 2
        assert _value(data, "atp_grpc_requests_total", method=COMPLETE, code="OK") == 4
        assert _value(data, "atp_grpc_requests_total", method=COMPLETE, code="RESOURCE_EXHAUSTED") == 1
        assert _value(data, "atp_grpc_request_seconds_count", method=COMPLETE) == 5

        # The router: decisions by model (from Route), snapshot state, and per-method gRPC counts.
        control = await _scrape(client, suite["router"])
        assert _value(control, "atp_router_decisions_total", model="local-small") == 1
        route_method = "/atp.router.v1.RouterService/Route"
        assert _value(control, "atp_grpc_requests_total", method=route_method, code="OK") == 1
        assert _value(control, "atp_grpc_request_seconds_count", method=route_method) == 1
        assert _value(control, "atp_router_policy_watchers") == 1

        # The observer: every observation stored, the ingest buffer's depth, commit latency. The Ingest
        # call is counted when it returns, a moment after its observations are committed and counted.
        ingest = "/atp.observer.v1.ObserverService/Ingest"
        store = await _eventually(
            client,
            suite["observer"],
            lambda s: (
                _value(s, "atp_observer_ingested_observations_total", result="stored") >= served
                and _value(s, "atp_grpc_requests_total", method=ingest, code="OK") >= 1
            ),
        )
        assert _value(store, "atp_observer_ingested_observations_total", result="stored") == served
        assert _value(store, "atp_observer_ingest_commit_seconds_count") >= 1
        assert any(s.name == "atp_observer_ingest_buffer_observations" for s in store)

        # Nothing anywhere is labelled per request: no label value is a request or decision id.
        for samples in (edge, data, control, store):
            for sample in samples:
                assert not ids & set(sample.labels.values()), sample
