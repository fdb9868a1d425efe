"""Issue 6 acceptance: two real gateway processes sharing the real Redis, in front of the real adapters,
router and observer. Limits and budgets hold on every transport and across replicas; revocations reach both
gateways within a second; the admin API is tenant-scoped; a Redis outage follows the configured fail mode."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
import redis.asyncio as redis
import websockets
import yaml
from prometheus_client import REGISTRY

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.channels import open_channel
from atp_common.config import AtpConfig
from atp_common.server import RunningServer
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.stack import adapters_and_gateway, until, unused_address

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEYS = {
    "ops": "sk-ops-admin-0001",
    "acme": "sk-acme-user-0001",
    "burst": "sk-burst-user-01",
    "other": "sk-other-user-01",
}
KEYS["spender"] = "sk-spender-user-1"
KEYS["capped"] = "sk-keyspend-capped-1"
KEYS["uncapped"] = "sk-keyspend-free-01"
LARGE_IN, LARGE_OUT = 2.50e-6, 10.0e-6  # local-large's prices per token
PRICEY_IN, PRICEY_OUT = 125e-6, 500e-6  # local-pricey's: a $0.50 budget lasts a few dozen requests
KEY_BUDGET = 0.50


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _config_dict() -> dict:
    tenant = lambda name, **extra: {"api_keys": [{"hash": _hash(KEYS[name]), "name": name}], **extra}  # noqa: E731
    return {
        "providers": {"local": {"type": "local", "latency_ms": 40}},
        "models": {
            "local-small": {"provider": "local", "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4},
            "local-large": {"provider": "local", "input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10.0},
            "local-pricey": {"provider": "local", "input_usd_per_mtok": 125.0, "output_usd_per_mtok": 500.0},
        },
        "routes": {"auto": {"candidates": ["local-small", "local-large"]}},
        "tenants": {
            "ops": {"api_keys": [{"hash": _hash(KEYS["ops"]), "role": "operator", "name": "ops"}]},
            "acme": tenant("acme", requests_per_minute=6),
            "burst": tenant("burst", requests_per_minute=10, tokens_per_minute=100_000),
            "spender": tenant("spender"),
            "other": tenant("other"),
            # Two keys of one tenant without limits of its own: one key carries a budget.
            "keyspend": {
                "api_keys": [
                    {"hash": _hash(KEYS["capped"]), "name": "capped", "daily_budget_usd": KEY_BUDGET},
                    {"hash": _hash(KEYS["uncapped"]), "name": "uncapped"},
                ]
            },
        },
    }


class GatewayProcess:
    """`python -m atp_gateway`; its JSON log lines are read continuously so the pipe never fills."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.lines: list[bytes] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str]) -> GatewayProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "atp_gateway",
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw)
            if b'"ready"' in raw and not self.ready.done():
                line = orjson.loads(raw)
                if line.get("event") == "ready":
                    self.ready.set_result(line)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"gateway exited: {self.lines[-5:]}"))

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader


@dataclass
class Stack:
    prefix: str
    redis: redis.Redis
    router: RunningServer
    observer: RunningServer
    adapters: RunningServer
    urls: list[str]
    processes: list[GatewayProcess]

    def client(self, index: int, tenant: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.urls[index], headers={"authorization": f"Bearer {KEYS[tenant]}"}, timeout=20
        )


@pytest.fixture
async def stack(redis_url, tmp_path: Path) -> AsyncIterator[Stack]:
    prefix = f"t{secrets.token_hex(6)}:"
    raw = _config_dict()
    config_path = tmp_path / "atp.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = AtpConfig.model_validate(raw)
    common = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1, "log_json": True}
    observer = await build_observer(
        ObserverSettings(**common, sqlite_path=str(tmp_path / "obs.sqlite3")), config=config
    )
    router = await build_router(
        RouterSettings(
            **common,
            observer_addr=observer.address,
            redis_url=redis_url,
            redis_prefix=prefix,
            snapshot_min_interval_s=0,
            reload_on_sighup=False,
        ),
        config=config,
    )
    adapters = await build_adapters(
        AdaptersSettings(
            **common,
            router_addr=router.address,
            observer_addr=observer.address,
            spool_dir=str(tmp_path / "spool"),
            redis_url=redis_url,
            redis_prefix=prefix,
            ship_interval_s=0.05,
        ),
        config=config,
    )
    env = {
        "ATP_CONFIG": str(config_path),
        "ATP_LOG_JSON": "true",
        "ATP_GATEWAY_PORT": "0",
        "ATP_GATEWAY_METRICS_PORT": "0",
        "ATP_GATEWAY_ADAPTERS_ADDR": adapters.address,
        "ATP_GATEWAY_ROUTER_ADDR": router.address,
        "ATP_GATEWAY_OBSERVER_ADDR": observer.address,
        "ATP_GATEWAY_REDIS_URL": redis_url,
        "ATP_GATEWAY_REDIS_PREFIX": prefix,
        "ATP_GATEWAY_DRAIN_DELAY_S": "0",
    }
    processes = [await GatewayProcess.start(env) for _ in range(2)]
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        ready = [await asyncio.wait_for(p.ready, 30) for p in processes]
        urls = [f"http://127.0.0.1:{line['port']}" for line in ready]
        for url in urls:
            async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                await until(lambda http=http: _status_ok(http, "/readyz"), timeout_s=15, what="gateway ready")
        yield Stack(prefix, client, router, observer, adapters, urls, processes)
    finally:
        for process in processes:
            await process.close()
        await adapters.stop_now()
        await router.stop_now()
        await observer.stop_now()
        await client.aclose()


async def _status_ok(http: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await http.get(path)).status_code == 200
    except httpx.HTTPError:
        return False


def _body(text: str = "count these words please", model: str = "auto", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def _plain(http: httpx.AsyncClient, **extra) -> httpx.Response:
    return await http.post("/v1/chat/completions", json=_body(**extra))


async def _sse(http: httpx.AsyncClient, **extra) -> tuple[httpx.Response, list[dict]]:
    body = _body(stream=True, stream_options={"include_usage": True}, **extra)
    events: list[dict] = []
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response, events
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(orjson.loads(line[6:]))
    return response, events


async def _ws(url: str, tenant: str, **extra) -> dict:
    ws_url = url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(
        ws_url, additional_headers={"authorization": f"Bearer {KEYS[tenant]}"}, open_timeout=5
    ) as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": _body(**extra)}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("done", "error"):
                return frame


def _refused_as_openai(response: httpx.Response, code: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


async def test_requests_per_minute_count_every_transport_on_both_gateways(stack: Stack):
    a, b = stack.client(0, "acme"), stack.client(1, "acme")
    async with a, b:
        remaining = []
        for http in (a, b):
            response = await _plain(http)
            assert response.status_code == 200, response.text
            assert response.headers["x-ratelimit-limit-requests"] == "6"
            assert response.headers["x-ratelimit-reset-requests"].endswith("s")
            remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
        for http in (a, b):
            response, events = await _sse(http)
            assert response.status_code == 200 and events[-1]["usage"]["completion_tokens"] > 0
            remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
        assert remaining == [5, 4, 3, 2]
        for url in stack.urls:
            assert (await _ws(url, "acme"))["type"] == "done"
        # The seventh request is refused, whatever the transport and whichever gateway, and the refusal
        # says where the limit stands, as OpenAI's does.
        refused = await _plain(a)
        _refused_as_openai(refused, "rate_limit_exceeded")
        assert refused.headers["x-ratelimit-limit-requests"] == "6"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
        response, _ = await _sse(b)
        _refused_as_openai(response, "rate_limit_exceeded")
        frame = await _ws(stack.urls[0], "acme")
        assert frame["type"] == "error" and frame["status"] == 429
        assert frame["error"]["code"] == "rate_limit_exceeded"


async def test_a_concurrent_burst_across_two_gateways_and_direct_callers_gets_exactly_the_limit(stack: Stack):
    clients = [stack.client(0, "burst"), stack.client(1, "burst")]
    async with clients[0], clients[1]:
        channel = open_channel(stack.adapters.address)
        adapters = adapters_pb2_grpc.AdaptersServiceStub(channel)

        async def one(i: int) -> int:
            http = clients[i % 2]
            if i % 5 == 4:
                # An internal caller on Generate directly shares the tenant's count with the gateways.
                request = adapters_pb2.GenerateRequest(
                    tenant="burst", model="auto", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
                )
                try:
                    async for _ in adapters.Generate(request, timeout=10):
                        pass
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    return 429
                return 200
            if i % 3 == 0:
                response, _ = await _sse(http)
                return response.status_code
            return (await _plain(http)).status_code

        statuses = await asyncio.gather(*(one(i) for i in range(30)))
        await channel.close()
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20


async def test_budget_is_not_overspent_under_50_concurrent_streams(stack: Stack):
    budget = 0.002
    async with stack.client(0, "ops") as ops:
        reply = await ops.patch("/v1/admin/tenants/spender", json={"daily_budget_usd": budget})
        assert reply.status_code == 200, reply.text
        assert reply.json()["daily_budget_usd"] == budget
    admission = stack.adapters.parts.admission
    await until(lambda: "spender" in admission.follower.directory.limits, what="adapters see the budget")

    # A long prompt echoed back: the reply is cut at max_tokens, so actual cost is close to the estimate.
    text = " ".join(f"word{i}" for i in range(40))
    clients = [stack.client(0, "spender"), stack.client(1, "spender")]
    costs: list[float] = []
    refusals = 0
    async with clients[0], clients[1]:
        for _wave in range(2):
            results = await asyncio.gather(
                *(_sse(clients[i % 2], text=text, model="local-large", max_tokens=16) for i in range(50))
            )
            for response, events in results:
                if response.status_code == 200:
                    usage = events[-1]["usage"]
                    costs.append(usage["prompt_tokens"] * LARGE_IN + usage["completion_tokens"] * LARGE_OUT)
                else:
                    _refused_as_openai(response, "insufficient_quota")
                    refusals += 1
            await admission.limiter.flush()
    estimate = (len(text) // 4 + 10) * LARGE_IN + 16 * LARGE_OUT  # above the kernel's prompt estimate
    assert costs and refusals
    assert sum(costs) <= budget + estimate, (sum(costs), len(costs))
    # The tenant's counter holds the settled actual spend, not the reservations.
    day = time.strftime("%Y%m%d", time.gmtime())
    stored = int(await stack.redis.get(f"{stack.prefix}{{spender}}:bd:{day}"))
    # Each settlement rounds its cost up to a whole micro-USD.
    assert 0 <= stored - sum(costs) * 1_000_000 <= len(costs), (stored, sum(costs))
    print(
        f"budget ${budget}: {len(costs)} served, {refusals} refused, spent ${sum(costs):.6f}, estimate ${estimate:.6f}"
    )


async def test_key_budget_is_not_overspent_under_50_concurrent_streams(stack: Stack):
    admission = stack.adapters.parts.admission
    key_id = "cfg_" + _hash(KEYS["capped"]).removeprefix("sha256:")[:16]
    assert key_id in admission.follower.directory.key_limits
    text = " ".join(f"word{i}" for i in range(40))
    clients = [stack.client(0, "capped"), stack.client(1, "capped")]
    costs: list[float] = []
    refusals = 0
    async with clients[0], clients[1]:
        for _wave in range(2):
            results = await asyncio.gather(
                *(_sse(clients[i % 2], text=text, model="local-pricey", max_tokens=16) for i in range(50))
            )
            for response, events in results:
                if response.status_code == 200:
                    usage = events[-1]["usage"]
                    costs.append(usage["prompt_tokens"] * PRICEY_IN + usage["completion_tokens"] * PRICEY_OUT)
                else:
                    _refused_as_openai(response, "insufficient_quota")
                    assert f"API key {key_id}'s daily budget" in response.json()["error"]["message"]
                    refusals += 1
            await admission.limiter.flush()
    estimate = (len(text) // 4 + 10) * PRICEY_IN + 16 * PRICEY_OUT  # above the kernel's prompt estimate
    assert costs and refusals
    assert sum(costs) <= KEY_BUDGET + estimate, (sum(costs), len(costs))
    # The key's counter holds the settled actual spend; the tenant itself has no budget counter.
    day = time.strftime("%Y%m%d", time.gmtime())
    stored = int(await stack.redis.get(f"{stack.prefix}{{keyspend}}:k:{key_id}:bd:{day}"))
    assert 0 <= stored - sum(costs) * 1_000_000 <= len(costs), (stored, sum(costs))
    assert not await stack.redis.exists(f"{stack.prefix}{{keyspend}}:bd:{day}")
    # The tenant's other key is not held by this key's budget.
    async with stack.client(1, "uncapped") as other:
        _response, events = await _sse(other, text=text, model="local-pricey", max_tokens=16)
        assert events and events[-1]["usage"]["completion_tokens"] > 0
    print(
        f"key budget ${KEY_BUDGET}: {len(costs)} served, {refusals} refused, spent ${sum(costs):.4f}, "
        f"estimate ${estimate:.4f}"
    )


async def test_a_revoked_key_is_refused_on_both_gateways_within_a_second(stack: Stack):
    async with stack.client(0, "ops") as ops_a, stack.client(1, "ops") as ops_b:
        created = await ops_a.post("/v1/admin/keys", json={"tenant": "acme", "name": "temp"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        listed = (await ops_b.get("/v1/admin/keys", params={"tenant": "acme"})).json()["data"]
        assert key_id in [k["id"] for k in listed] and all("key" not in k for k in listed)
        users = [
            httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=5)
            for url in stack.urls
        ]
        async with users[0], users[1]:
            for user in users:
                await until(lambda user=user: _models_status(user, 200), timeout_s=2, what="new key accepted")
            revoked = await ops_b.delete(f"/v1/admin/keys/{key_id}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"]
            started = time.monotonic()
            waits = []
            for user in users:
                await until(lambda user=user: _models_status(user, 401), timeout_s=1.0, what="revocation")
                waits.append(time.monotonic() - started)
            assert max(waits) < 1.0
    # The key never appears in the gateways' logs.
    for process in stack.processes:
        assert not any(key.encode() in line for line in process.lines)


async def _models_status(http: httpx.AsyncClient, status: int) -> bool:
    return (await http.get("/v1/models")).status_code == status


async def test_admin_api_is_tenant_scoped(stack: Stack):
    async with (
        stack.client(0, "acme") as acme,
        stack.client(1, "other") as other,
        stack.client(0, "ops") as ops,
    ):
        assert (await _plain(acme)).status_code == 200
        assert (await _plain(other)).status_code == 200

        async def seen() -> list[dict]:
            data = (await acme.get("/v1/admin/observations")).json()["data"]
            return data or []

        mine = await until(seen, what="acme's observation stored")
        assert {o["tenant"] for o in mine} == {"acme"}
        refused = await acme.get("/v1/admin/observations", params={"tenant": "other"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
        theirs = await until(
            lambda: _observations(ops, "other"), what="admin reads the other tenant's observations"
        )
        assert {o["tenant"] for o in theirs} == {"other"}
        assert all(KEYS["other"] not in orjson.dumps(o).decode() for o in theirs)
        # Key management needs the admin role.
        assert (await acme.post("/v1/admin/keys", json={"tenant": "acme"})).status_code == 403
        assert (
            await acme.patch("/v1/admin/tenants/acme", json={"requests_per_minute": 1000})
        ).status_code == 403
        usage = await acme.get("/v1/admin/usage", params={"group_by": "tenant"})
        assert usage.status_code == 200
        assert {row["tenant"] for row in usage.json()["data"]} <= {"acme"}


async def _observations(http: httpx.AsyncClient, tenant: str) -> list[dict]:
    return (await http.get("/v1/admin/observations", params={"tenant": tenant})).json()["data"]


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_down_follows_the_fail_mode_visibly(fail_mode: str, tmp_path: Path):
    down = f"redis://{unused_address()}/0"
    nowhere = unused_address()
    config = AtpConfig.model_validate(_config_dict())
    before = REGISTRY.get_sample_value(f"atp_limits_fail_{fail_mode}_total") or 0.0
    async with (
        adapters_and_gateway(
            config,
            tmp_path,
            observer_addr=nowhere,
            router_addr=nowhere,
            adapters={"redis_url": down, "limits_fail_mode": fail_mode},
            gateway={"router_addr": nowhere, "redis_url": down},
        ) as gateway,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.port}",
            headers={"authorization": f"Bearer {KEYS['acme']}"},
            timeout=10,
        ) as http,
    ):
        response = await _plain(http)
        if fail_mode == "open":
            assert response.status_code == 200
            assert "x-ratelimit-limit-requests" not in response.headers
        else:
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
        health = (await http.get("/healthz")).json()
    assert health["directory"] == {"store": "redis", "reachable": False, "version": ""}
    assert REGISTRY.get_sample_value(f"atp_limits_fail_{fail_mode}_total") == before + 1
    assert REGISTRY.get_sample_value("atp_limits_store_up", {"store": "redis"}) == 0
    assert REGISTRY.get_sample_value("atp_gateway_directory_store_up") == 0
