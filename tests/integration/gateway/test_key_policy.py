"""Keys that carry policy, end to end on both limiter backends (the real Redis, and the in-process limiter
with the local directory file): a key's budget, model lists and expiry, and each end user's budget within
its tenant, set through the admin API and enforced by the adapters' admission on HTTP, SSE, WebSocket and
the adapters' gRPC API."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
import websockets

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_common.channels import open_channel
from tests.support.key_stack import KeyStack, key_stack
from tests.support.stack import until

ADMIN_KEY = "sk-keypolicy-admin-01"
TENANT_KEY = "sk-keypolicy-acme-001"
EXPIRED_KEY = "sk-keypolicy-expired1"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {
        "local-small": {"provider": "local", "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4},
        "local-large": {"provider": "local", "input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10.0},
        # About a cent a request: a budget of a few cents lasts a few requests.
        "local-pricey": {"provider": "local", "input_usd_per_mtok": 125.0, "output_usd_per_mtok": 500.0},
        "echo-embed": {"provider": "local", "capabilities": ["embeddings"]},
    },
    "routes": {"auto": {"candidates": ["local-small", "local-large"]}},
    "tenants": {
        "ops": {"api_keys": [{"hash": _hash(ADMIN_KEY), "role": "admin", "name": "ops"}]},
        "acme": {
            "api_keys": [
                {"hash": _hash(TENANT_KEY), "name": "acme"},
                {"hash": _hash(EXPIRED_KEY), "name": "old", "expires_at": "2020-01-01T00:00:00Z"},
            ]
        },
    },
}


@pytest.fixture(params=["redis", "memory"])
async def stack(request, redis_url, tmp_path: Path) -> AsyncIterator[KeyStack]:
    async with key_stack(CONFIG, request.param, redis_url, tmp_path) as running:
        yield running


def _body(model: str = "auto", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "count these words"}], **extra}


async def _chat(http: httpx.AsyncClient, model: str = "auto", **extra) -> httpx.Response:
    return await http.post("/v1/chat/completions", json=_body(model, **extra))


async def _sse_status(http: httpx.AsyncClient, model: str, **extra) -> int:
    async with http.stream("POST", "/v1/chat/completions", json=_body(model, stream=True, **extra)) as reply:
        await reply.aread()
        return reply.status_code


async def _ws(url: str, key: str, model: str) -> dict:
    async with websockets.connect(
        url.replace("http://", "ws://") + "/v1/ws", additional_headers={"authorization": f"Bearer {key}"}
    ) as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": _body(model)}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("done", "error"):
                return frame


async def _generate(stack: KeyStack, model: str, *, key_id: str = "", end_user: str = "") -> grpc.StatusCode:
    """One Generate call straight to the adapters, as an internal caller makes it (a budget refusal is
    FAILED_PRECONDITION there, 429 insufficient_quota at the gateway)."""
    request = adapters_pb2.GenerateRequest(
        tenant="acme",
        model=model,
        key_id=key_id,
        end_user=end_user,
        messages=[chat_pb2.ChatMessage(role="user", content="hi")],
        params=chat_pb2.GenerationParams(max_tokens=16),
    )
    channel = open_channel(stack.adapters.address)
    try:
        async for _ in adapters_pb2_grpc.AdaptersServiceStub(channel).Generate(request, timeout=10):
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def _embed(stack: KeyStack, model: str, *, key_id: str) -> grpc.StatusCode:
    request = adapters_pb2.EmbedRequest(
        tenant="acme", model=model, key_id=key_id, inputs=[adapters_pb2.EmbedInput(text="x")]
    )
    channel = open_channel(stack.adapters.address)
    try:
        await adapters_pb2_grpc.AdaptersServiceStub(channel).Embed(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def _create_key(ops: httpx.AsyncClient, stack: KeyStack, **fields) -> tuple[str, str]:
    created = await ops.post("/v1/admin/keys", json={"tenant": "acme", **fields})
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    # The adapters first: the gateway reuses a key's model list for models_cache_s, so a list fetched
    # before the adapters know the key's policy would hide it from the assertions that follow.
    await until(lambda: _seen_by_adapters(stack, key_id), what="the adapters see the key's policy")
    async with stack.client(key) as http:
        await until(lambda: _models_status(http, 200), what="the gateway accepts the new key")
    return key, key_id


async def _models_status(http: httpx.AsyncClient, status: int) -> bool:
    return (await http.get("/v1/models")).status_code == status


async def _seen_by_adapters(stack: KeyStack, key_id: str) -> bool:
    directory = stack.adapters.parts.admission.follower.directory
    return any(
        key_id in table for table in (directory.key_limits, directory.key_models, directory.key_expiry)
    )


async def _spend_until_refused(stack: KeyStack, send, limit: int = 30) -> tuple[int, httpx.Response]:
    """Requests until one is refused; how many were served and the refusal. Each one's actual cost is
    settled before the next, so once one is refused every later one of the same size is too."""
    for served in range(limit):
        response = await send()
        await stack.adapters.parts.admission.limiter.flush()
        if response.status_code != 200:
            return served, response
    raise AssertionError(f"not refused after {limit} requests")


def _over_budget(response: httpx.Response, whose: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_quota" and whose in error["message"], error


async def test_a_keys_budget_refuses_that_key_and_not_its_tenants_others(stack: KeyStack) -> None:
    async with stack.client(ADMIN_KEY) as ops, stack.client(TENANT_KEY) as other:
        key, key_id = await _create_key(ops, stack, name="capped", limits={"daily_budget_usd": 0.03})
        listed = (await ops.get("/v1/admin/keys", params={"tenant": "acme"})).json()["data"]
        assert {k["id"]: k["limits"]["daily_budget_usd"] for k in listed}[key_id] == 0.03
        async with stack.client(key) as capped:
            served, refused = await _spend_until_refused(
                stack, lambda: _chat(capped, "local-pricey", max_tokens=16)
            )
            assert served >= 1
            _over_budget(refused, f"API key {key_id}'s daily budget")
            # Every path of the key is held by it: SSE, and the adapters' gRPC API with its id.
            assert await _sse_status(capped, "local-pricey", max_tokens=16) == 429
            assert (
                await _generate(stack, "local-pricey", key_id=key_id) == grpc.StatusCode.FAILED_PRECONDITION
            )
            assert (await _chat(other, "local-pricey", max_tokens=16)).status_code == 200
            # Raising the budget through the admin API lets the key spend again.
            changed = await ops.patch(f"/v1/admin/keys/{key_id}", json={"limits": {"daily_budget_usd": 5}})
            assert changed.status_code == 200 and changed.json()["limits"]["daily_budget_usd"] == 5
            await until(lambda: _status(_chat(capped, "local-pricey", max_tokens=16), 200), what="raised")


async def _status(reply, status: int) -> bool:  # type: ignore[no-untyped-def]
    return (await reply).status_code == status


async def test_a_keys_model_lists_narrow_its_tenants(stack: KeyStack) -> None:
    async with stack.client(ADMIN_KEY) as ops:
        small_key, small_id = await _create_key(ops, stack, name="small", allowed_models=["local-small"])
        no_small_key, _ = await _create_key(ops, stack, name="no-small", denied_models=["local-small"])
        async with stack.client(small_key) as small, stack.client(no_small_key) as no_small:
            listed = {m["id"] for m in (await small.get("/v1/models")).json()["data"]}
            assert "local-small" in listed and not listed & {"local-large", "local-pricey"}, listed
            routed = await _chat(small, "auto")
            assert routed.status_code == 200 and routed.json()["model"] == "local-small"
            refused = await _chat(small, "local-large")
            assert refused.status_code == 403, refused.text
            message = refused.json()["error"]["message"]
            assert "local-large" in message and f"API key {small_id!r} allowed_models" in message
            frame = await _ws(stack.url, small_key, "local-large")
            assert frame["type"] == "error" and "local-large" in frame["error"]["message"]
            assert await _generate(stack, "local-large", key_id=small_id) == grpc.StatusCode.PERMISSION_DENIED
            rerouted = await _chat(no_small, "auto")
            assert rerouted.status_code == 200 and rerouted.json()["model"] == "local-large"
            assert (await _chat(no_small, "local-small")).status_code == 403
            # Embeddings too: over HTTP and the adapters' Embed.
            embed = await small.post("/v1/embeddings", json={"model": "echo-embed", "input": "x"})
            assert embed.status_code == 403 and "echo-embed" in embed.json()["error"]["message"]
            assert (
                await no_small.post("/v1/embeddings", json={"model": "echo-embed", "input": "x"})
            ).status_code == 200
            assert await _embed(stack, "echo-embed", key_id=small_id) == grpc.StatusCode.PERMISSION_DENIED
            # Clearing the allow-list through the admin API restores the tenant's models.
            cleared = await ops.patch(f"/v1/admin/keys/{small_id}", json={"allowed_models": []})
            assert cleared.status_code == 200 and cleared.json()["allowed_models"] == []
            await until(lambda: _status(_chat(small, "local-large"), 200), what="the allow-list cleared")


async def test_an_expired_key_is_refused_like_a_revoked_one_within_a_second(stack: KeyStack) -> None:
    async with stack.client(EXPIRED_KEY) as expired, stack.client(ADMIN_KEY) as ops:
        refused = await _chat(expired)
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "Incorrect API key provided."
        expires_at = time.time() + 1.5
        stamp = datetime.fromtimestamp(expires_at, UTC).isoformat()
        key, key_id = await _create_key(ops, stack, name="short", expires_at=stamp)
        listed = (await ops.get("/v1/admin/keys", params={"tenant": "acme"})).json()["data"]
        assert {k["id"]: k["expires_at"] for k in listed}[key_id].startswith(stamp[:19])
        async with stack.client(key) as short:
            assert (await _chat(short)).status_code == 200
            await until(lambda: _models_status(short, 401), timeout_s=4, what="the key expires")
            refused_at = time.time()
            assert expires_at <= refused_at < expires_at + 1.0, refused_at - expires_at
            print(f"expired key refused {refused_at - expires_at:.3f} s after expires_at")
            same = await _chat(short)
            assert same.status_code == 401 and same.json() == refused.json()


async def test_an_end_users_budget_refuses_that_user_and_not_another(stack: KeyStack) -> None:
    async with stack.client(ADMIN_KEY) as ops:
        reply = await ops.patch("/v1/admin/tenants/acme", json={"user_daily_budget_usd": 0.03})
        assert reply.status_code == 200 and reply.json()["user_daily_budget_usd"] == 0.03
    directory = lambda: stack.adapters.parts.admission.follower.directory  # noqa: E731
    await until(lambda: _true("acme" in directory().user_budgets), what="the adapters see the user budget")
    async with stack.client(TENANT_KEY) as acme, stack.client(TENANT_KEY, **{"x-atp-user": "alice"}) as alice:
        served, refused = await _spend_until_refused(
            stack, lambda: _chat(acme, "local-pricey", max_tokens=16, user="alice")
        )
        assert served >= 1
        _over_budget(refused, "end user 'alice''s daily budget")
        # The same user by the x-atp-user header, on SSE; by Anthropic's metadata.user_id; on gRPC.
        assert await _sse_status(alice, "local-pricey", max_tokens=16) == 429
        messages = await acme.post(
            "/v1/messages",
            json={**_body("local-pricey"), "max_tokens": 16, "metadata": {"user_id": "alice"}},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert messages.status_code == 429 and messages.json()["type"] == "error", messages.text
        assert await _generate(stack, "local-pricey", end_user="alice") == grpc.StatusCode.FAILED_PRECONDITION
        # Another user, and requests naming no user, are not held by alice's budget.
        assert (await _chat(acme, "local-pricey", max_tokens=16, user="bob")).status_code == 200
        assert (await _chat(acme, "local-pricey", max_tokens=16)).status_code == 200
        assert await _generate(stack, "local-pricey", end_user="bob") == grpc.StatusCode.OK


async def _true(value: bool) -> bool:
    return value
