"""Fuzzing the whole edge over a real stack (observer, router, adapters, gateway): schemathesis on every
endpoint, the admin API included, then raw sockets and WebSocket garbage. No 5xx, no internal detail."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.fuzz_hooks import INTERNAL_DETAIL
from tests.support.schemathesis_cli import run_schemathesis
from tests.support.stack import until

ADMIN_KEY = "sk-fuzz-admin-000001"
USER_KEY = "sk-fuzz-user-0000001"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {"local-small": {"provider": "local"}},
    "routes": {"auto": {"candidates": ["local-small"]}},
    "tenants": {
        "ops": {"api_keys": [{"hash": _hash(ADMIN_KEY), "role": "operator", "name": "ops"}]},
        "acme": {"daily_budget_usd": 100.0, "api_keys": [{"hash": _hash(USER_KEY), "name": "acme"}]},
    },
}


@dataclass
class Edge:
    gateway: GatewayServer

    @property
    def port(self) -> int:
        return self.gateway.port


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    config = AtpConfig.model_validate(CONFIG)
    common = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1}
    directory = {"directory_path": str(tmp_path / "tenants.json")}
    observer = await build_observer(
        ObserverSettings(**common, sqlite_path=str(tmp_path / "obs.sqlite3")), config=config
    )
    router = await build_router(
        RouterSettings(
            **common,
            **directory,
            observer_addr=observer.address,
            reload_on_sighup=False,
            snapshot_min_interval_s=0,
        ),
        config=config,
    )
    adapters = await build_adapters(
        AdaptersSettings(
            **common,
            **directory,
            router_addr=router.address,
            observer_addr=observer.address,
            spool_dir=str(tmp_path / "spool"),
        ),
        config=config,
    )
    settings = GatewaySettings(
        **common,
        **directory,
        adapters_addr=adapters.address,
        router_addr=router.address,
        observer_addr=observer.address,
        head_timeout_s=2.0,
    )
    gateway = GatewayServer(settings, create_app(settings, config=config))
    await gateway.start()
    try:
        await until(lambda: gateway.gateway.ready, what="gateway ready")
        yield Edge(gateway)
    finally:
        await gateway.stop_now()
        await adapters.stop_now()
        await router.stop_now()
        await observer.stop_now()


def _schema_with_admin(gateway: GatewayServer) -> bytes:
    """The OpenAPI document with the admin routes in it (left out of the published one)."""
    app = gateway.app
    for route in app.routes:
        if getattr(route, "path", "").startswith("/v1/admin"):
            route.include_in_schema = True  # type: ignore[attr-defined]
    app.openapi_schema = None
    return orjson.dumps(app.openapi())


async def _schemathesis(edge: Edge, tmp_path: Path, key: str) -> None:
    schema = tmp_path / "openapi.json"
    schema.write_bytes(_schema_with_admin(edge.gateway))
    await run_schemathesis(
        str(schema),
        key,
        tmp_path,
        checks="not_a_server_error,no_internal_detail",
        max_examples=12,
        seed=7,
        extra=("--url", f"http://127.0.0.1:{edge.port}"),
    )


async def test_schemathesis_on_every_endpoint_as_admin_finds_no_5xx_or_internal_detail(edge, tmp_path):
    await _schemathesis(edge, tmp_path, ADMIN_KEY)


_CHAT = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer " + USER_KEY.encode() + b"\r\n"
)
RAW_CASES = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello on the plain port
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
    b"GET /healthz\r\n\r\n",  # HTTP/0.9
    b"GET /healthz HTTP/9.9\r\nhost: gw\r\n\r\n",
    b"G\x00T /healthz HTTP/1.1\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nhost: gw\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-bad\x00name: v\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nhost: gw\r\n bad-fold: v\r\n\r\n",
    b"GET /v1/admin/decisions/" + b"d" * 8000 + b" HTTP/1.1\r\nhost: gw\r\n\r\n",
    _CHAT + b"content-length: -1\r\n\r\n",
    _CHAT + b"content-length: 99999999999999999999\r\n\r\n",
    _CHAT + b"content-length: 5\r\ncontent-length: 6\r\n\r\n{}",
    _CHAT + b"content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    _CHAT + b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    _CHAT + b"transfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    _CHAT + b"content-length: 2\r\n\r\n{x",
    _CHAT + b"content-length: 4\r\n\r\nnull",
    _CHAT + b"content-length: 2\r\n\r\n[]",
    _CHAT + b"content-type: text/plain\r\ncontent-length: 3\r\n\r\n\xff\xfe\xfd",
    _CHAT + b'content-length: 40\r\n\r\n{"model": "auto", "messages": [{"role"',
    b"POST /v1/feedback HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer x\r\ncontent-length: 3\r\n\r\n{\x00}",
    b"DELETE /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n\r\n",
    b"GET /v1/ws HTTP/1.1\r\nhost: gw\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    b"GET /v1/admin/usage?start=1e400&end=nan HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
    + USER_KEY.encode()
    + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\nGARBAGE AFTER A REQUEST\r\n\r\n",
]


async def _raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(65536), 4)
        except (TimeoutError, ConnectionError):
            return b""
    finally:
        writer.close()


async def test_raw_socket_abuse_gets_no_5xx_or_internal_detail(edge):
    replies = await asyncio.gather(*(_raw(edge.port, payload) for payload in RAW_CASES))
    for payload, reply in zip(RAW_CASES, replies, strict=True):
        if reply.startswith(b"HTTP/"):
            status = int(reply.split(b" ", 2)[1])
            assert status < 500, (payload[:80], reply[:300])
        assert INTERNAL_DETAIL.search(reply) is None, (payload[:80], reply[:300])


WS_CASES: list[str | bytes] = [
    b"\x00\x01binary",
    "not json",
    "[]",
    "null",
    '{"type": "request"}',
    '{"type": "request", "id": 7, "body": {}}',
    '{"type": "request", "id": "' + "i" * 10_000 + '", "body": {"model": "auto"}}',
    '{"type": "request", "id": "a", "body": "text"}',
    '{"type": "request", "id": "b", "body": {"model": "' + "m" * 10_000 + '", "messages": []}}',
    '{"type": "request", "id": "c", "body": {"model": "auto", "messages": [{"role": "user", "content": 5}]}}',
    '{"type": "cancel", "id": "nothing-in-flight"}',
    '{"type": "launch"}',
    '{"type": "request", "id": "d", "body": {"model": "auto", "messages": [{"role": "user", "content": "hi"}], '
    '"max_tokens": 1, "max_completion_tokens": 1}}',
]


async def test_websocket_garbage_gets_no_5xx_or_internal_detail(edge):
    url = f"ws://127.0.0.1:{edge.port}/v1/ws"
    headers = {"authorization": f"Bearer {USER_KEY}"}
    for case in WS_CASES:
        async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
            await ws.send(case)
            frames: list[str | bytes] = []
            try:
                frames.append(await asyncio.wait_for(ws.recv(), 2))
            except (TimeoutError, ConnectionClosed):
                pass
            for frame in frames:
                raw = frame.encode() if isinstance(frame, str) else frame
                assert INTERNAL_DETAIL.search(raw) is None, (case[:80], raw[:300])
                parsed = orjson.loads(raw)
                assert parsed.get("status", 200) < 500, (case[:80], parsed)
            assert ws.close_code in (None, 1000, 1003, 1007, 1008, 1009), (case[:80], ws.close_code)
