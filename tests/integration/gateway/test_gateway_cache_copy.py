"""Cache hits answered by the gateway's copy: the same replies as the adapters' hits on HTTP, SSE and WebSocket,
with the adapters not called, every hit observed, and the principals the copy must leave to the adapters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from prometheus_client import REGISTRY

from atp_common.config import AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeOpenAI, FakeReply, Faults
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.stack import adapters_and_gateway, until

CHAT = "/v1/chat/completions"
FREE_KEY, OTHER_KEY = "atp-copy-free-key-0001", "atp-copy-other-key-001"
DENIED_KEY, ALLOWED_KEY = "atp-copy-denied-key-01", "atp-copy-allowed-key-1"
LIMITED_KEY, EXPIRED_KEY = "atp-copy-limited-key-1", "atp-copy-expired-key-1"
ANSWER = "An answer worth keeping."


def _config(provider: FakeOpenAI) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"openai": {"type": "openai", "base_url": provider.base_url, "max_retries": 0}},
            "models": {
                "gpt": {
                    "provider": "openai",
                    "capabilities": ["streaming", "json", "tools"],
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 4.0,
                }
            },
            "routes": {
                "auto": {"candidates": ["gpt"]},
                "cached": {"candidates": ["gpt"], "cache": {"ttl_s": 60, "sampled": True}},
            },
            "tenants": {
                "free": {
                    "api_keys": [
                        {"hash": hash_api_key(FREE_KEY), "name": "free"},
                        {"hash": hash_api_key(DENIED_KEY), "name": "denied", "denied_models": ["gpt"]},
                        {"hash": hash_api_key(ALLOWED_KEY), "name": "allowed", "allowed_models": ["gpt"]},
                        {
                            "hash": hash_api_key(EXPIRED_KEY),
                            "name": "old",
                            "expires_at": "2020-01-01T00:00:00Z",
                        },
                    ]
                },
                "other": {"api_keys": [{"hash": hash_api_key(OTHER_KEY), "name": "other"}]},
                "limited": {
                    "api_keys": [{"hash": hash_api_key(LIMITED_KEY), "name": "limited"}],
                    "requests_per_minute": 3,
                },
            },
        }
    )


@dataclass
class Stack:
    gateway: GatewayServer
    provider: FakeOpenAI
    observer: RecordingObserver

    def http(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.gateway.port}",
            headers={"authorization": f"Bearer {key}"},
            timeout=10.0,
        )

    async def ws(self, key: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[dict]:
        url = f"ws://127.0.0.1:{self.gateway.port}/v1/ws"
        frames = []
        async with websockets.connect(
            url, additional_headers={"authorization": f"Bearer {key}", **(headers or {})}
        ) as ws:
            await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": body}).decode())
            while True:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                frames.append(frame)
                if frame["type"] in ("done", "error"):
                    return frames


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path, copy_entries: int, **gateway: Any) -> AsyncIterator[Stack]:
    provider = FakeOpenAI()
    await provider.start()
    provider.reply = FakeReply(text=ANSWER)
    # Streams arrive in several reads, so a streamed reply reaches the gateway in several messages.
    provider.faults = Faults(chunk_delay_s=0.002)
    observer, observer_server = await start_recording_observer()
    try:
        async with adapters_and_gateway(
            _config(provider),
            tmp_path / str(copy_entries),
            observer_addr=observer_server.address,
            adapters={"ship_interval_s": 0.02},
            gateway={"cache_copy_entries": copy_entries, "cache_report_interval_s": 0.02, **gateway},
        ) as gateway:
            yield Stack(gateway, provider, observer)
    finally:
        await observer_server.stop_now()
        await provider.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(tmp_path, 4096) as running:
        yield running


def _metric(name: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0


def _adapters_hits() -> float:
    return _metric("atp_adapters_cache_lookups_total", "hit")


def _body(model: str = "cached", text: str = "tell me something", **fields: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


_HEADERS = ("x-atp-cache", "x-atp-model", "x-atp-deployment", "content-type")
_VARYING = {"id", "item_id", "created", "created_at", "completed_at", "decision_id"}


def _stable(value: Any) -> Any:
    """A reply without what differs between two identical requests (ids, timestamps)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VARYING}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _seen(reply: httpx.Response, decisions: dict[str, int]) -> tuple[Any, ...]:
    """What a client sees, with the decision named by its order of appearance in the scenario (so a hit
    must repeat the very reply the other stack's hit repeats)."""
    decision = reply.headers.get("x-atp-decision-id")
    headers = (
        *(reply.headers.get(name) for name in _HEADERS),
        decisions.setdefault(decision, len(decisions)),
    )
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        lines = reply.content.split(b"\n")
        events = [orjson.loads(line[6:]) if line.startswith(b"data: {") else line for line in lines]
        return reply.status_code, headers, _stable(events)
    return reply.status_code, headers, _stable(reply.json())


# (label, body, request headers): each step's outcome must be the same whoever answers the hits.
_HTTP_STEPS: list[tuple[str, dict[str, object], dict[str, str]]] = [
    ("miss", _body(), {}),
    ("hit", _body(), {}),
    ("hit, streamed", _body(stream=True), {}),
    ("hit, streamed with usage", _body(stream=True, stream_options={"include_usage": True}), {}),
    ("refresh, streamed", _body(stream=True), {"x-atp-cache": "refresh"}),
    ("hit after the refresh", _body(), {}),
    ("no-store reads", _body(), {"x-atp-cache": "no-store"}),
    ("no-store miss stores nothing", _body(text="other"), {"x-atp-cache": "no-store"}),
    ("then a miss", _body(text="other"), {}),
    ("a route without cache", _body("auto"), {}),
    ("use on a route without cache", _body("auto", text="cold", temperature=0), {"x-atp-cache": "use"}),
    ("its hit", _body("auto", text="cold", temperature=0), {"x-atp-cache": "use"}),
    ("no header: that route reads no cache", _body("auto", text="cold", temperature=0), {}),
]
_MESSAGES = {"model": "cached", "max_tokens": 64, "messages": [{"role": "user", "content": "hi there"}]}
_RESPONSES = {"model": "cached", "input": "hi there"}
# Anthropic's Messages and OpenAI's Responses over the same exchange: a miss, a hit, a streamed hit each.
_OTHER_DIALECTS = [
    (path, {**body, **extra})
    for path, body in (("/v1/messages", _MESSAGES), ("/v1/responses", _RESPONSES))
    for extra in ({}, {}, {"stream": True})
]
_EXPECTED_CACHE = [
    "miss",
    "hit",
    "hit",
    "hit",
    "refresh",
    "hit",
    "hit",
    None,
    "miss",
    None,
    "miss",
    "hit",
    None,
]


async def _scenario(stack: Stack) -> tuple[list[Any], int]:
    seen: list[Any] = []
    decisions: dict[str, int] = {}
    async with stack.http(FREE_KEY) as http:
        for _label, body, headers in _HTTP_STEPS:
            seen.append(_seen(await http.post(CHAT, json=body, headers=headers), decisions))
    for body, headers in [
        (_body(), {}),
        (_body(stream=False), {}),
        (_body(), {"x-atp-cache": "refresh"}),
    ]:
        frames = await stack.ws(FREE_KEY, body, headers)
        seen.append((_stable(frames), decisions.setdefault(frames[-1]["decision_id"], len(decisions))))
    async with stack.http(FREE_KEY) as http:
        for path, body in _OTHER_DIALECTS:
            reply = await http.post(path, json=body, headers={"anthropic-version": "2023-06-01"})
            seen.append(_seen(reply, decisions))
    async with stack.http(OTHER_KEY) as http:
        seen.append(_seen(await http.post(CHAT, json=_body()), decisions))
    return seen, len(stack.provider.requests)


async def test_the_copy_answers_as_the_adapters_do_in_every_dialect_and_transport(tmp_path: Path) -> None:
    async with _stack(tmp_path, 0) as without:
        adapters_before = _adapters_hits()
        expected, expected_calls = await _scenario(without)
        adapters_hits_without = _adapters_hits() - adapters_before
    async with _stack(tmp_path, 4096) as with_copy:
        adapters_before = _adapters_hits()
        copy_before = _metric("atp_gateway_cache_copy_total", "hit")
        seen, calls = await _scenario(with_copy)
        adapters_hits_with = _adapters_hits() - adapters_before
        copy_hits = _metric("atp_gateway_cache_copy_total", "hit") - copy_before
    assert [step[1][0] for step in expected[: len(_HTTP_STEPS)]] == _EXPECTED_CACHE
    ws_frames = [frames for frames, _ in expected[len(_HTTP_STEPS) : len(_HTTP_STEPS) + 3]]
    assert [frames[-1].get("cache") for frames in ws_frames] == ["hit", "hit", "refresh"]
    # The hit after a refresh repeats the refreshed reply, not the first one.
    assert expected[5][1][4] == expected[4][1][4] != expected[0][1][4]
    assert expected[-1][1][0] == "miss"  # another tenant's identical request
    dialects = expected[len(_HTTP_STEPS) + 3 : -1]
    assert [step[1][0] for step in dialects] == ["miss", "hit", "hit"] * 2
    labels = [s[0] for s in _HTTP_STEPS] + ["ws"] * 3 + [p for p, _ in _OTHER_DIALECTS] + ["tenant"]
    for label, mine, theirs in zip(labels, seen, expected, strict=True):
        assert mine == theirs, label
    assert calls == expected_calls == 11
    # Without the copy the adapters answered every hit; with it, the gateway answered most (after a
    # refresh, and for a stored stream, the adapters answer the first hit and the copy is taken from it).
    assert adapters_hits_without == 12
    assert copy_hits >= 9 and adapters_hits_with + copy_hits == 12


async def test_a_hit_answered_here_reaches_the_observer_as_a_hit(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        first = await http.post(CHAT, json=_body(text="observe me"), headers={"x-request-id": "obs-miss"})
        adapters_before = _adapters_hits()
        hit = await http.post(
            CHAT,
            json=_body(text="observe me", stream=True),
            headers={"x-request-id": "obs-hit", "x-atp-tags": "team=search"},
        )
    assert first.headers["x-atp-cache"] == "miss" and hit.headers["x-atp-cache"] == "hit"
    assert _adapters_hits() == adapters_before  # answered by the gateway
    stored = await stack.observer.wait_for("obs-miss")
    observed = await stack.observer.wait_for("obs-hit")
    assert observed.cache_hit and observed.provider == "cache" and observed.decision.policy == "cache"
    assert observed.cached_decision_id == stored.decision.decision_id == hit.headers["x-atp-decision-id"]
    assert observed.saved_cost_usd == stored.cost_usd > 0 and observed.cost_usd == 0
    assert observed.tenant == "free" and observed.key_id == stored.key_id and observed.dialect == "chat"
    assert dict(observed.tags) == {"team": "search"} and observed.prompt_hash == stored.prompt_hash
    assert len(stack.provider.requests) == 1


async def test_expired_keys_are_refused_and_listed_keys_and_limits_left_to_the_adapters(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        assert (await http.post(CHAT, json=_body())).headers["x-atp-cache"] == "miss"
        assert (await http.post(CHAT, json=_body())).headers["x-atp-cache"] == "hit"
    before = _adapters_hits(), _metric("atp_gateway_cache_copy_total", "fall_through")
    async with stack.http(DENIED_KEY) as http:
        denied = await http.post(CHAT, json=_body())
        denied_ws = await stack.ws(DENIED_KEY, _body())
    async with stack.http(ALLOWED_KEY) as http:
        allowed = await http.post(CHAT, json=_body())
    async with stack.http(EXPIRED_KEY) as http:
        expired = await http.post(CHAT, json=_body())
    assert denied.status_code == 403 and "denied_models" in denied.json()["error"]["message"]
    assert denied_ws[-1]["type"] == "error" and denied_ws[-1]["error"]["code"] == "permission_denied"
    assert allowed.status_code == 200 and allowed.headers["x-atp-cache"] == "hit"
    assert expired.status_code == 401  # the key check comes before the copy
    # The adapters looked up all three (they find the entry before they filter by the key's lists).
    assert _adapters_hits() == before[0] + 3
    async with stack.http(LIMITED_KEY) as http:
        replies = [await http.post(CHAT, json=_body()) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers.get("x-atp-cache") for r in replies[:3]] == ["miss", "hit", "hit"]
    assert all("x-ratelimit-remaining-requests" in r.headers for r in replies[:3])
    assert _adapters_hits() == before[0] + 6  # the refused fourth was found, then not admitted
    assert _metric("atp_gateway_cache_copy_total", "fall_through") - before[1] == 7
    assert len(stack.provider.requests) == 2


async def test_hits_are_reported_in_batches_and_the_queue_is_empty_after(stack: Stack) -> None:
    async with stack.http(FREE_KEY) as http:
        await http.post(CHAT, json=_body(text="batch"))
        before = _metric("atp_adapters_cache_lookups_total", "gateway_hit")
        replies = await asyncio.gather(
            *(http.post(CHAT, json=_body(text="batch"), headers={"x-request-id": f"b{i}"}) for i in range(20))
        )
    assert {r.headers["x-atp-cache"] for r in replies} == {"hit"}
    reporter = stack.gateway.gateway.hit_reports
    assert reporter is not None
    await until(
        lambda: _metric("atp_adapters_cache_lookups_total", "gateway_hit") - before == 20, what="reports"
    )
    assert len(reporter) == 0
    for i in range(20):
        assert (await stack.observer.wait_for(f"b{i}")).cache_hit


async def test_hits_still_queued_at_shutdown_are_reported_before_the_channel_closes(tmp_path: Path) -> None:
    async with _stack(tmp_path, 4096, cache_report_interval_s=60.0, cache_report_batch=4096) as stack:
        async with stack.http(FREE_KEY) as http:
            await http.post(CHAT, json=_body(text="late"))
            for i in range(3):
                reply = await http.post(CHAT, json=_body(text="late"), headers={"x-request-id": f"late{i}"})
                assert reply.headers["x-atp-cache"] == "hit"
        reporter = stack.gateway.gateway.hit_reports
        assert reporter is not None and len(reporter) == 3  # nothing sent yet: a minute's interval
        observer = stack.observer
    # The gateway stopped first (its close sends the queue), then the adapters (their shipper delivers).
    hits = [o for o in observer.observations.values() if o.request_id.startswith("late") and o.cache_hit]
    assert sorted(o.request_id for o in hits) == ["late0", "late1", "late2"]


async def test_while_the_report_queue_is_full_the_adapters_answer_the_hits(tmp_path: Path) -> None:
    async with _stack(tmp_path, 4096, cache_report_interval_s=60.0, cache_report_max_bytes=1024) as stack:
        async with stack.http(FREE_KEY) as http:
            await http.post(CHAT, json=_body(text="full"))
            adapters_before = _adapters_hits()
            replies = [await http.post(CHAT, json=_body(text="full")) for _ in range(12)]
        reporter = stack.gateway.gateway.hit_reports
        assert reporter is not None
        queued = len(reporter)
    assert {r.headers["x-atp-cache"] for r in replies} == {"hit"}
    # A few hits fill the queue (nothing is sent for a minute); the adapters answer the rest.
    assert 0 < queued < 12 and _adapters_hits() - adapters_before == 12 - queued


async def test_a_hit_whose_client_went_away_mid_write_is_still_reported(stack: Stack) -> None:
    # The adapters observe a hit they answered however its delivery ends; a hit answered here must be
    # reported as well when writing it to the client fails (uvicorn raises OSError once it has gone).
    async with stack.http(FREE_KEY) as http:
        assert (await http.post(CHAT, json=_body(text="gone"))).headers["x-atp-cache"] == "miss"
    body = orjson.dumps(_body(text="gone"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", stack.gateway.port),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {FREE_KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", b"client-gone"),
        ],
    }
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()  # nothing more until the call ends
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    copy_hits = _metric("atp_gateway_cache_copy_total", "hit")
    await stack.gateway.app(scope, receive, send)
    assert _metric("atp_gateway_cache_copy_total", "hit") == copy_hits + 1  # answered here
    observed = await stack.observer.wait_for("client-gone", within_s=5)
    assert observed.cache_hit and observed.provider == "cache"


async def test_a_route_whose_cache_is_turned_off_stops_hits_here_within_the_copy_lifetime(
    tmp_path: Path,
) -> None:
    # The gateway reads no configuration change: the adapters stop storing (and stop giving an expiry),
    # and what the copy holds lives at most ATP_GATEWAY_CACHE_COPY_TTL_S.
    provider = FakeOpenAI()
    await provider.start()
    provider.reply = FakeReply(text=ANSWER)
    observer, observer_server = await start_recording_observer()
    config = _config(provider)
    path = tmp_path / "atp.yaml"
    path.write_text(orjson.dumps(config.model_dump(mode="json", exclude_none=True)).decode())
    try:
        async with adapters_and_gateway(
            config,
            tmp_path,
            observer_addr=observer_server.address,
            adapters={"config_path": str(path), "config_poll_s": 0.05},
            gateway={"cache_copy_ttl_s": 1.0},
        ) as gateway:
            stack = Stack(gateway, provider, observer)
            async with stack.http(FREE_KEY) as http:
                assert (await http.post(CHAT, json=_body())).headers["x-atp-cache"] == "miss"
                copy_hits = _metric("atp_gateway_cache_copy_total", "hit")
                assert (await http.post(CHAT, json=_body())).headers["x-atp-cache"] == "hit"
                assert _metric("atp_gateway_cache_copy_total", "hit") == copy_hits + 1
                off = config.model_dump(mode="json", exclude_none=True)
                del off["routes"]["cached"]["cache"]
                path.write_text(orjson.dumps(off).decode())

                asked = iter(range(1000))

                async def cache_off() -> bool:
                    # A new question each time: an earlier one may be in the copy.
                    reply = await http.post(CHAT, json=_body(text=f"fresh question {next(asked)}"))
                    return "x-atp-cache" not in reply.headers

                await until(cache_off, timeout_s=5, what="the route without its cache")
                await asyncio.sleep(1.1)  # the copy's lifetime
                after = await http.post(CHAT, json=_body())
                assert "x-atp-cache" not in after.headers
    finally:
        await observer_server.stop_now()
        await provider.stop()
