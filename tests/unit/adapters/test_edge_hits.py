"""ReportCacheHits on the real adapters: each hit a gateway answered becomes an adapters hit's observation;
one that cannot be recorded is skipped alone, and an oversized report is refused whole."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.edge_hits import MAX_HITS_PER_REPORT
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.ports import free_port

CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {"echo": {"provider": "local", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}},
    "routes": {"r": {"candidates": ["echo"], "cache": {"ttl_s": 30}}},
    "default_route": "r",
    "tenants": {"acme": {}},
}


def _hit(request_id: str, model: str = "r") -> adapters_pb2.CacheHit:
    request = adapters_pb2.GenerateRequest(
        model=model,
        tenant="acme",
        request_id=request_id,
        key_id="k1",
        dialect="messages",
        messages=[chat_pb2.ChatMessage(role="user", content="hello")],
    )
    request.tags["team"] = "search"
    return adapters_pb2.CacheHit(
        request=request,
        stored=adapters_pb2.GenerateHeader(decision_id="d-original", model="echo"),
        saved_cost_usd=0.125,
        started_at_unix_ns=time.time_ns() - 2_000_000,
        latency_ms=2.0,
        observation_id=request_id.ljust(32, "0"),
    )


async def test_reported_hits_are_observed_as_hits_and_a_bad_one_is_skipped_alone(tmp_path: Path) -> None:
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        ship_interval_s=0.02,
        drain_delay_s=0,
        grace_s=1,
    )
    adapters = await build_server(settings, config=AtpConfig.model_validate(CONFIG))
    channel = aio.insecure_channel(adapters.address)
    try:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        report = adapters_pb2.ReportCacheHitsRequest(hits=[_hit("h1"), _hit("h2", model="gone"), _hit("h3")])
        reply = await stub.ReportCacheHits(report, timeout=5)
        # Sent again (its answer lost, say): the observation ids make the second one a duplicate.
        again = await stub.ReportCacheHits(report, timeout=5)
        first, third = await observer.wait_for("h1"), await observer.wait_for("h3")
        too_many = adapters_pb2.ReportCacheHitsRequest(hits=[_hit("x")] * (MAX_HITS_PER_REPORT + 1))
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.ReportCacheHits(too_many, timeout=5)
    finally:
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
    assert reply.recorded == again.recorded == 2
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len([o for o in observer.observations.values() if o.request_id in ("h1", "h3")]) == 2
    assert not any(o.request_id == "h2" for o in observer.observations.values())
    assert first.cache_hit and first.provider == "cache" and first.decision.policy == "cache"
    assert first.cached_decision_id == "d-original" and first.saved_cost_usd == 0.125
    assert first.cost_usd == 0 and first.usage.prompt_tokens == 0 and first.model == "echo"
    assert first.key_id == "k1" and first.dialect == "messages" and dict(first.tags) == {"team": "search"}
    assert first.decision.route == "r" and first.latency_ms >= 1.99  # the gateway's 2 ms
    assert third.observation_id == "h3".ljust(32, "0")


@asynccontextmanager
async def _adapters(
    tmp_path: Path,
) -> AsyncIterator[tuple[RecordingObserver, adapters_pb2_grpc.AdaptersServiceStub]]:
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        ship_interval_s=0.02,
        drain_delay_s=0,
        grace_s=1,
    )
    adapters = await build_server(settings, config=AtpConfig.model_validate(CONFIG))
    channel = aio.insecure_channel(adapters.address)
    try:
        yield observer, adapters_pb2_grpc.AdaptersServiceStub(channel)
    finally:
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()


async def test_numbers_a_caller_reports_are_checked_not_trusted(tmp_path: Path) -> None:
    # A NaN or infinite latency used to fail the observation's timestamps and with them the whole report
    # (which the gateway resends, failing again, for good); each hit here is recorded, with sane numbers.
    odd = {
        "nan-latency": {"latency_ms": math.nan},
        "inf-latency": {"latency_ms": math.inf},
        "huge-latency": {"latency_ms": 1e300},
        "negative-latency": {"latency_ms": -5.0},
        "no-start": {"started_at_unix_ns": 0},
        "future-start": {"started_at_unix_ns": 2**62},
        "nan-saving": {"saved_cost_usd": math.nan},
        "negative-saving": {"saved_cost_usd": -3.0},
    }
    hits = [_hit("good")]
    for name, fields in odd.items():
        hit = _hit(name)
        for field, value in fields.items():
            setattr(hit, field, value)
        hits.append(hit)
    before = time.time()
    async with _adapters(tmp_path) as (observer, stub):
        reply = await stub.ReportCacheHits(adapters_pb2.ReportCacheHitsRequest(hits=hits), timeout=5)
        observed = {name: await observer.wait_for(name) for name in ["good", *odd]}
    assert reply.recorded == len(hits)
    assert observed["good"].latency_ms >= 1.99 and observed["good"].saved_cost_usd == 0.125
    for name, observation in observed.items():
        started = observation.started_at.ToNanoseconds() / 1e9
        assert before - 60 <= started <= time.time(), name
        assert 0.0 <= observation.latency_ms < 60_000.0, name
        assert 0.0 <= observation.saved_cost_usd <= 0.125, name
    assert observed["nan-saving"].saved_cost_usd == observed["negative-saving"].saved_cost_usd == 0.0
