"""The gateway's copy of cache entries (bounds, expiry, what it keeps and for whom) and its hit reports
against adapters that cannot be reached."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from grpc import aio
from prometheus_client import REGISTRY

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.cache_entries import canonical_key, replay
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, hash_api_key
from atp_common.limits.directory import Directory, config_key_id
from atp_common.server import MAX_MESSAGE_BYTES
from atp_gateway.auth import KeyStore
from atp_gateway.cache_copy import CacheCopy
from atp_gateway.cache_reports import HitReporter
from atp_gateway.cache_serve import copied_reply, report_hit
from atp_gateway.gateway import Gateway
from atp_gateway.settings import GatewaySettings
from tests.fakes.observer import start_recording_observer
from tests.support.ports import free_port
from tests.support.stack import unused_address

LIMITED = hash_api_key("sk-limited-key-000001").removeprefix("sha256:")
LISTED = hash_api_key("sk-listed-key-0000001").removeprefix("sha256:")
CONFIG = AtpConfig.model_validate(
    {
        "providers": {"local": {"type": "local"}},
        "models": {"echo": {"provider": "local"}},
        "routes": {
            "auto": {"candidates": ["echo"]},
            "cached": {"candidates": ["echo"], "cache": {"ttl_s": 60}},
        },
        "tenants": {
            "acme": {
                "api_keys": [
                    {"hash": f"sha256:{LIMITED}", "name": "limited", "requests_per_minute": 10},
                    {"hash": f"sha256:{LISTED}", "name": "listed", "allowed_models": ["echo"]},
                ]
            },
            "budgeted": {"daily_budget_usd": 5.0},
        },
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _copy(clock: Clock, *, entries: int = 8, size: int = 1 << 20, ttl_s: float = 30.0) -> CacheCopy:
    directory = Directory(CONFIG)
    return CacheCopy(
        CONFIG, lambda: directory, max_entries=entries, max_bytes=size, max_ttl_s=ttl_s, clock=clock
    )


def _request(
    text: str, *, tenant: str = "acme", model: str = "cached", **fields: object
) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        model=model, tenant=tenant, messages=[chat_pb2.ChatMessage(role="user", content=text)], **fields
    )


def _reply(text: str, *, expires_in_s: float = 60.0, cache: str = "miss") -> adapters_pb2.GenerateResponse:
    reply = adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(role="assistant", content=text)])
    reply.header.decision_id, reply.header.model, reply.header.cache = "d-" + text, "echo", cache
    reply.header.cache_expires_at_ms = int((time.time() + expires_in_s) * 1000) if expires_in_s else 0
    reply.completion.cost_usd = 0.25
    return reply


def test_a_kept_reply_answers_the_same_request_of_the_same_tenant_only() -> None:
    copy = _copy(Clock())
    copy.keep(_request("a"), _reply("a"))
    key, hit = copy.lookup(_request("a", request_id="r2", key_id="", cache="no-store", stream=True))
    assert hit is not None and key == canonical_key(_request("a"), "acme") and hit.saved_cost_usd == 0.25
    assert copy.lookup(_request("a", tenant="globex"))[1] is None
    assert copy.lookup(_request("a", params=chat_pb2.GenerationParams(temperature=0.5)))[1] is None
    assert copy.lookup(_request("a", cache="refresh")) == ("", None)
    # A route without a cache is read only when the request asks for the cache.
    copy.keep(_request("b", model="auto"), _reply("b"))
    assert copy.lookup(_request("b", model="auto")) == ("", None)
    assert copy.lookup(_request("b", model="auto", cache="use"))[1] is not None


def test_what_is_not_kept() -> None:
    copy = _copy(Clock())
    copy.keep(_request("semantic"), _reply("semantic", expires_in_s=0))  # nothing the adapters stored
    broken = _reply("broken")
    broken.error.code = "UNAVAILABLE"
    copy.keep(_request("broken"), broken)
    expired = _reply("expired", expires_in_s=-1)
    copy.keep(_request("expired"), expired)
    partial = _reply("partial")
    partial.ClearField("completion")
    copy.keep(_request("partial"), partial)
    assert len(copy) == 0


def test_a_hit_reply_keeps_the_cost_of_the_stored_one() -> None:
    stored = _reply("x")
    [hit] = replay(stored, _request("x"), "r9")
    assert hit.header.cache == "hit" and hit.completion.cost_usd == 0
    copy = _copy(Clock())
    copy.keep(_request("x"), hit)
    entry = copy.lookup(_request("x"))[1]
    assert entry is not None and entry.saved_cost_usd == 0.25


def test_bounded_in_entries_and_bytes_least_recent_out_and_expiring() -> None:
    clock = Clock()
    copy = _copy(clock, entries=3)
    for text in "abc":
        copy.keep(_request(text), _reply(text))
    assert copy.lookup(_request("a"))[1] is not None  # a is now the most recent
    copy.keep(_request("d"), _reply("d"))
    assert [copy.lookup(_request(t))[1] is not None for t in "abcd"] == [True, False, True, True]
    one = _reply("e").ByteSize()
    small = _copy(clock, size=2 * one + one // 2)
    for text in "efg":
        small.keep(_request(text), _reply(text))
    assert len(small) == 2 and small.lookup(_request("e"))[1] is None
    # The adapters' expiry, capped by the copy's own.
    short = _copy(clock, ttl_s=5.0)
    short.keep(_request("h"), _reply("h", expires_in_s=60))
    short.keep(_request("i"), _reply("i", expires_in_s=2))
    clock.now += 3
    assert short.lookup(_request("h"))[1] is not None and short.lookup(_request("i"))[1] is None
    clock.now += 3
    assert short.lookup(_request("h"))[1] is None and len(short) == 0


def test_principals_with_limits_or_key_model_lists_are_left_to_the_adapters() -> None:
    copy = _copy(Clock())
    for tenant in ("acme", "budgeted"):
        copy.keep(_request("a", tenant=tenant), _reply("a"))
    assert copy.lookup(_request("a"))[1] is not None
    assert copy.lookup(_request("a", key_id=config_key_id(LIMITED))) == ("", None)
    assert copy.lookup(_request("a", key_id=config_key_id(LISTED))) == ("", None)
    assert copy.lookup(_request("a", tenant="budgeted")) == ("", None)


def _dropped() -> float:
    return REGISTRY.get_sample_value("atp_gateway_cache_hit_reports_total", {"outcome": "dropped"}) or 0.0


async def test_unreachable_adapters_keep_hits_until_full_then_close_drops_and_counts() -> None:
    channel = aio.insecure_channel(unused_address())
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

    async def send(request: adapters_pb2.ReportCacheHitsRequest) -> object:
        return await stub.ReportCacheHits(request, timeout=0.2)

    hit = adapters_pb2.CacheHit(request=_request("a"), observation_id="o" * 32)
    reporter = HitReporter(send, batch=2, interval_s=0.01, max_bytes=hit.ByteSize() * 5)
    reporter.start()
    try:
        for _ in range(5):
            assert reporter.has_room()
            reporter.add(hit)
        assert not reporter.has_room()  # full: the next hit goes to the adapters instead
        before = _dropped()
        await reporter.close(0.3)
        assert _dropped() - before == 5 and len(reporter) == 0 and reporter.has_room()
    finally:
        await channel.close()


def _gateway_hits() -> float:
    return REGISTRY.get_sample_value("atp_adapters_cache_lookups_total", {"outcome": "gateway_hit"}) or 0.0


async def test_reports_stay_under_the_message_limit_and_one_refused_is_dropped_not_resent(
    tmp_path: Path,
) -> None:
    # Large prompts with a generous queue bound: 256 hits in one call would be far over gRPC's limit, a
    # report refused on every retry, holding back every hit behind it. Calls of at most 4 MiB all pass;
    # a single hit over the limit is refused, dropped and counted, and the hits after it still go.
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        drain_delay_s=0,
        grace_s=1,
    )
    adapters = await build_server(settings, config=CONFIG)
    channel = open_channel(adapters.address)
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

    async def send(request: adapters_pb2.ReportCacheHitsRequest) -> object:
        return await stub.ReportCacheHits(request, timeout=5)

    def hit(n: int, size: int) -> adapters_pb2.CacheHit:
        # The bulk in the stored header, not the prompt: the route's model takes 8k tokens.
        stored = adapters_pb2.GenerateHeader(decision_id="d", model="echo", system_fingerprint="x" * size)
        request = _request(str(n), request_id=f"r{n}")
        return adapters_pb2.CacheHit(request=request, stored=stored, observation_id=f"{n:032x}")

    reporter = HitReporter(send, batch=256, interval_s=0.01, max_bytes=64 << 20)
    before, dropped = _gateway_hits(), _dropped()
    try:
        for n in range(20):
            reporter.add(hit(n, 1 << 20))
        reporter.add(hit(20, MAX_MESSAGE_BYTES + (1 << 20)))
        reporter.add(hit(21, 10))
        reporter.start()
        # Reported in order: the last hit observed, every call before it has been answered.
        await observer.wait_for("r21", within_s=20)
    finally:
        await reporter.close(1.0)
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
    assert _gateway_hits() - before == 21 and _dropped() - dropped == 1
    assert reporter.has_room()


async def test_at_shutdown_a_failed_report_is_retried_until_the_deadline(tmp_path: Path) -> None:
    # The adapters are away when the gateway stops (restarting, say) and back within its deadline: the
    # queued hits reach them, where giving up at the first failed call dropped them all.
    port = free_port()
    channel = open_channel(f"127.0.0.1:{port}", reconnect_max_s=0.1)
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

    async def send(request: adapters_pb2.ReportCacheHitsRequest) -> object:
        return await stub.ReportCacheHits(request, timeout=1)

    reporter = HitReporter(send, batch=8, interval_s=60, max_bytes=1 << 20)
    for n in range(3):
        stored = adapters_pb2.GenerateHeader(decision_id="d", model="echo")
        reporter.add(
            adapters_pb2.CacheHit(request=_request("late"), stored=stored, observation_id=f"{n:032x}")
        )
    reporter.start()
    settings = AdaptersSettings(
        port=port,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=f"127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "spool"),
        drain_delay_s=0,
        grace_s=1,
    )
    before, dropped = _gateway_hits(), _dropped()
    closing = asyncio.ensure_future(reporter.close(5.0))
    await asyncio.sleep(0.3)  # the first calls fail: nothing listens yet
    adapters = await build_server(settings, config=CONFIG)
    try:
        await asyncio.wait_for(closing, 10)
    finally:
        await channel.close()
        await adapters.stop_now()
    assert _gateway_hits() - before == 3 and _dropped() == dropped and len(reporter) == 0


async def test_hits_being_answered_hold_their_room_in_the_report_queue() -> None:
    # Many hits answered at once (slow clients): each passed the room check before any was queued, so the
    # queue could grow far past its bound. Room is now held from the answer to the report.
    gateway = Gateway(
        GatewaySettings(port=0, metrics_port=None), CONFIG, key_store=KeyStore.from_config(CONFIG)
    )
    request = _request("busy")
    gateway.cache_copy.keep(request, _reply("busy"))

    async def send(report: adapters_pb2.ReportCacheHitsRequest) -> object:
        raise AssertionError("not started: nothing is sent")

    one = adapters_pb2.CacheHit(
        request=request, stored=_reply("busy").header, latency_ms=1.0, observation_id="0" * 32
    ).ByteSize()
    reporter = HitReporter(send, batch=256, interval_s=60, max_bytes=3 * one + one // 2)
    gateway.hit_reports = reporter
    answered = [copied for _ in range(10) if (copied := copied_reply(gateway, request)) is not None]
    for copied in answered:
        report_hit(gateway, request, copied, time.perf_counter())
    assert 1 <= len(answered) <= 3 and len(reporter) == len(answered)
    assert copied_reply(gateway, request) is None  # full: the adapters answer the next one
