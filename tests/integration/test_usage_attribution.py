"""Attribution end to end: 1,000 requests from three API keys and five end users, with tags, through the
gateway's HTTP (the openai SDK), SSE, WebSocket and the adapters' gRPC API; the usage the gateway reports
grouped by key, by user and by tag equals the sums the clients compute from their own replies, exactly, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import websockets

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_common.channels import open_channel
from atp_common.config import AtpConfig
from atp_common.limits.directory import config_key_id
from atp_gateway.serve import GatewayServer
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from tests.support.stack import adapters_and_gateway, until

pytestmark = pytest.mark.timeout(600)

REQUESTS = 1000
# Three keys in two tenants (the operator's key only reads usage), five end users, a few tag sets.
KEYS = {"sk-attr-acme-web-0001": "acme", "sk-attr-acme-batch-001": "acme", "sk-attr-globex-app-01": "globex"}
OPERATOR_KEY = "sk-attr-operator-0001"
USERS = ("ana", "ben", "chloe", "dev", "emil")
TAG_SETS: tuple[dict[str, str], ...] = (
    {},
    {"team": "search"},
    {"team": "ads"},
    {"team": "search", "env": "prod"},
    {"team": "ads", "env": "staging", "feature": "summaries"},
)
# Prices in whole micro-dollars per token, so each reply costs a whole number of nano-dollars and the
# clients' sums are integers: cost = prompt x input + completion x output.
PRICES_NANO = {"local-small": (1_000, 3_000), "local-large": (2_000, 7_000)}
TRANSPORTS = ("http", "sse", "websocket", "grpc")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config() -> AtpConfig:
    tenants: dict[str, Any] = {
        "ops": {"api_keys": [{"hash": f"sha256:{_digest(OPERATOR_KEY)}", "role": "admin"}]}
    }
    for key, tenant in KEYS.items():
        tenants.setdefault(tenant, {"api_keys": []})["api_keys"].append({"hash": f"sha256:{_digest(key)}"})
    models = {
        name: {"provider": "local", "input_usd_per_mtok": inp / 1000, "output_usd_per_mtok": out / 1000}
        for name, (inp, out) in PRICES_NANO.items()
    }
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": models,
            "routes": {"auto": {"candidates": list(models), "policy": "thompson"}},
            "tenants": tenants,
        }
    )


@dataclass(frozen=True)
class Plan:
    """One request: who sends it, for whom, with which tags, over which transport."""

    index: int
    key: str
    user: str
    tags: dict[str, str]
    transport: str

    @property
    def prompt(self) -> str:
        # Prompts of different lengths, so token counts differ from request to request.
        return "count these words " * (1 + self.index % 7) + f"request {self.index}"


@dataclass
class Sums:
    """What the clients saw, summed per group label."""

    rows: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))

    def add(self, label: tuple[str, ...], prompt: int, completion: int, cost_nanos: int) -> None:
        row = self.rows[label]
        row[0] += 1
        row[1] += prompt
        row[2] += completion
        row[3] += cost_nanos


@dataclass
class Seen:
    """One finished request as its client saw it."""

    plan: Plan
    model: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def cost_nanos(self) -> int:
        per_prompt, per_completion = PRICES_NANO[self.model]
        return self.prompt_tokens * per_prompt + self.completion_tokens * per_completion


def _plans() -> list[Plan]:
    rng = random.Random(18)
    keys = list(KEYS)
    return [
        Plan(i, rng.choice(keys), rng.choice(USERS), rng.choice(TAG_SETS), TRANSPORTS[i % len(TRANSPORTS)])
        for i in range(REQUESTS)
    ]


async def _http(gateway: str, plan: Plan) -> Seen:
    """The openai SDK, not streamed: the user in the body, the tags as metadata."""
    sdk = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=plan.key, max_retries=0, timeout=30)
    async with sdk:
        reply = await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": plan.prompt}],
            user=plan.user,
            metadata=plan.tags or None,
        )
    assert reply.usage is not None
    return Seen(plan, reply.model, reply.usage.prompt_tokens, reply.usage.completion_tokens)


async def _sse(gateway: str, plan: Plan) -> Seen:
    """The openai SDK streaming with usage: the user and tags as x-atp-* headers."""
    headers = {"x-atp-user": plan.user}
    if plan.tags:
        headers["x-atp-tags"] = ",".join(f"{k}={v}" for k, v in plan.tags.items())
    sdk = openai.AsyncOpenAI(
        base_url=f"{gateway}/v1", api_key=plan.key, max_retries=0, timeout=30, default_headers=headers
    )
    async with sdk:
        stream = await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": plan.prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage, model = None, ""
        async for chunk in stream:
            model = chunk.model or model
            usage = chunk.usage or usage
    assert usage is not None
    return Seen(plan, model, usage.prompt_tokens, usage.completion_tokens)


async def _websocket(gateway: str, plans: list[Plan]) -> list[Seen]:
    """One socket per key, several requests in flight on it, user and tags in each body."""
    headers = {"authorization": f"Bearer {plans[0].key}"}
    url = gateway.replace("http://", "ws://") + "/v1/ws"
    seen: list[Seen] = []
    async with websockets.connect(url, additional_headers=headers, max_size=2**22) as ws:
        for start in range(0, len(plans), 8):
            window = {str(p.index): p for p in plans[start : start + 8]}
            for request_id, plan in window.items():
                body = {
                    "model": "auto",
                    "messages": [{"role": "user", "content": plan.prompt}],
                    "user": plan.user,
                }
                if plan.tags:
                    body["metadata"] = plan.tags
                await ws.send(orjson.dumps({"type": "request", "id": request_id, "body": body}).decode())
            while window:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                assert frame["type"] in ("delta", "done"), frame
                if frame["type"] == "done":
                    usage = frame["response"]["usage"]
                    plan = window.pop(frame["id"])
                    seen.append(
                        Seen(plan, frame["model"], usage["prompt_tokens"], usage["completion_tokens"])
                    )
    return seen


async def _grpc(stub: adapters_pb2_grpc.AdaptersServiceStub, plan: Plan) -> Seen:
    """The adapters' Generate, as an internal caller uses it: tenant, key id, end user and tags given."""
    request = adapters_pb2.GenerateRequest(
        tenant=KEYS[plan.key],
        model="auto",
        messages=[chat_pb2.ChatMessage(role="user", content=plan.prompt)],
        stream=plan.index % 2 == 0,
        include_usage=True,
        key_id=config_key_id(_digest(plan.key)),
        end_user=plan.user,
        tags=plan.tags,
        dialect="chat",
    )
    model, usage = "", None
    async for response in stub.Generate(request, timeout=30):
        model = response.header.model or model
        if response.HasField("completion"):
            usage = response.completion.usage
    assert usage is not None
    return Seen(plan, model, usage.prompt_tokens, usage.completion_tokens)


async def _send_all(gateway: GatewayServer, plans: list[Plan]) -> list[Seen]:
    base = f"http://127.0.0.1:{gateway.port}"
    limit = asyncio.Semaphore(16)
    channel = open_channel(gateway.settings.adapters_addr)
    stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

    async def one(plan: Plan) -> Seen:
        async with limit:
            if plan.transport == "http":
                return await _http(base, plan)
            if plan.transport == "sse":
                return await _sse(base, plan)
            return await _grpc(stub, plan)

    try:
        by_key: dict[str, list[Plan]] = defaultdict(list)
        for plan in plans:
            if plan.transport == "websocket":
                by_key[plan.key].append(plan)
        sockets = [_websocket(base, mine) for mine in by_key.values()]
        others = [one(plan) for plan in plans if plan.transport != "websocket"]
        results = await asyncio.gather(*sockets, *others)
    finally:
        await channel.close()
    seen: list[Seen] = []
    for result in results:
        seen.extend(result if isinstance(result, list) else [result])
    return seen


def _client_sums(
    seen: list[Seen], labels: Callable[[Seen], list[tuple[str, ...]]]
) -> dict[tuple[str, ...], list[int]]:
    sums = Sums()
    for s in seen:
        for label in labels(s):
            sums.add(label, s.prompt_tokens, s.completion_tokens, s.cost_nanos)
    return dict(sums.rows)


async def _usage(
    admin: httpx.AsyncClient, group_by: str, fields: tuple[str, ...]
) -> dict[tuple[str, ...], list[int]]:
    reply = await admin.get("/v1/admin/usage", params={"tenant": "*", "group_by": group_by})
    assert reply.status_code == 200, reply.text
    got: dict[tuple[str, ...], list[int]] = {}
    for row in reply.json()["data"]:
        label = tuple(row.get(name, "") for name in fields)
        assert label not in got
        # int64 fields come as strings in the proto JSON mapping; a zero field is left out.
        nanos = int(row.get("cost_nano_usd", 0))
        assert row.get("cost_usd", 0.0) == nanos / 1e9
        got[label] = [
            int(row.get(name, 0)) for name in ("requests", "prompt_tokens", "completion_tokens")
        ] + [nanos]
    return got


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Empty for SQLite, else a fresh schema on the real PostgreSQL."""
    return str(request.getfixturevalue("postgres_dsn")) if request.param == "postgres" else ""


async def test_usage_by_key_user_and_tag_equals_what_the_clients_summed(
    database_url: str, tmp_path: Path
) -> None:
    config = _config()
    observer = await build_observer(
        ObserverSettings(
            port=0,
            metrics_port=None,
            drain_delay_s=0,
            grace_s=1,
            database_url=database_url,
            sqlite_path=str(tmp_path / "observer.sqlite3"),
        ),
        config=config,
    )
    try:
        async with adapters_and_gateway(
            config, tmp_path, observer_addr=observer.address, adapters={"ship_interval_s": 0.05}
        ) as gateway:
            started = time.time()
            seen = await _send_all(gateway, _plans())
            assert len(seen) == REQUESTS
            assert {s.plan.transport for s in seen} == set(TRANSPORTS)
            headers = {"authorization": f"Bearer {OPERATOR_KEY}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{gateway.port}", headers=headers, timeout=30
            ) as admin:

                async def stored() -> bool:
                    total = await _usage(admin, "", ())
                    return total.get((), [0])[0] == REQUESTS

                await until(stored, timeout_s=60, what="every observation stored")
                by_key = await _usage(admin, "key", ("key_id",))
                assert by_key == _client_sums(seen, lambda s: [(config_key_id(_digest(s.plan.key)),)])
                by_user = await _usage(admin, "user", ("end_user",))
                assert by_user == _client_sums(seen, lambda s: [(s.plan.user,)])
                # Once under each of its tags; untagged requests under an empty tag.
                by_tag = await _usage(admin, "tag", ("tag_key", "tag_value"))
                assert by_tag == _client_sums(seen, lambda s: list(s.plan.tags.items()) or [("", "")])
                by_everything = await _usage(
                    admin, "tenant,key,user,model", ("tenant", "key_id", "end_user", "model")
                )
                assert by_everything == _client_sums(
                    seen,
                    lambda s: [(KEYS[s.plan.key], config_key_id(_digest(s.plan.key)), s.plan.user, s.model)],
                )
                # By day over the time range: the same totals, in today's bucket (or two around midnight).
                daily = await admin.get(
                    "/v1/admin/usage",
                    params={"tenant": "*", "group_by": "key,day", "start": int(started) - 86_400},
                )
                assert daily.status_code == 200, daily.text
                assert sum(int(r["requests"]) for r in daily.json()["data"]) == REQUESTS
    finally:
        await observer.stop_now()
