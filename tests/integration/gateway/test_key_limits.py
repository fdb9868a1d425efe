"""Per-key limits end to end, in process: the router's admin API (through the gateway's HTTP admin routes)
sets and changes a key's limits, the adapters enforce them beside the tenant's, and refusals reach the
client as OpenAI's 429s with Retry-After and x-ratelimit-* headers. On the real Redis, and with the local
directory file and the in-process limiter."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from tests.support.key_stack import KeyStack, key_stack
from tests.support.stack import until

ADMIN_KEY = "sk-keylimits-admin-01"
TENANT_KEY = "sk-keylimits-acme-001"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {"local-small": {"provider": "local"}},
    "routes": {"auto": {"candidates": ["local-small"]}},
    "tenants": {
        "ops": {"api_keys": [{"hash": _hash(ADMIN_KEY), "role": "operator", "name": "ops"}]},
        "acme": {"requests_per_minute": 5, "api_keys": [{"hash": _hash(TENANT_KEY), "name": "acme"}]},
    },
}


Stack = KeyStack


@pytest.fixture(params=["redis", "memory"])
async def stack(request, redis_url, tmp_path: Path) -> AsyncIterator[Stack]:
    """On the real Redis (directory and counters), and on the local directory file with the adapters'
    in-process limiter."""
    async with key_stack(CONFIG, request.param, redis_url, tmp_path) as running:
        yield running


def _body() -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": "count these words"}]}


async def _chat(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post("/v1/chat/completions", json=_body())


async def _ws(url: str, key: str) -> dict:
    async with websockets.connect(
        url.replace("http://", "ws://") + "/v1/ws",
        additional_headers={"authorization": f"Bearer {key}"},
        open_timeout=5,
    ) as ws:
        await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": _body()}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("done", "error"):
                return frame


def _refused(response: httpx.Response, limit: int, *, by_key: bool) -> None:
    """OpenAI's 429: Retry-After, the x-ratelimit-* of the limit that refused, and its error object."""
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == str(limit)
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert ("of API key" in error["message"]) is by_key


async def _key_limit_seen(stack: Stack, key_id: str, limit: int) -> bool:
    limits = stack.adapters.parts.admission.follower.directory.key_limits.get(key_id)
    return limits is not None and limits.checks[-1].limit == limit


async def test_a_keys_limit_is_set_changed_and_enforced_beside_its_tenants(stack: Stack) -> None:
    async with stack.client(ADMIN_KEY) as ops, stack.client(TENANT_KEY) as tenant_key:
        created = await ops.post(
            "/v1/admin/keys", json={"tenant": "acme", "name": "strict", "limits": {"requests_per_minute": 2}}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["limits"] == {
            "requests_per_second": None,
            "requests_per_minute": 2,
            "requests_per_day": None,
            "tokens_per_second": None,
            "tokens_per_minute": None,
            "tokens_per_day": None,
            "daily_budget_usd": None,
            "monthly_budget_usd": None,
        }
        key, key_id = body["key"], body["id"]
        await until(lambda: _key_limit_seen(stack, key_id, 2), what="the adapters see the key's limit")
        async with stack.client(key) as strict:
            await until(lambda: _status(strict, 200), what="the gateway accepts the new key")
            # A concurrent burst: exactly the key's two, whatever the order.
            burst = await asyncio.gather(*(_chat(strict) for _ in range(5)))
            assert sorted(r.status_code for r in burst) == [200, 200, 429, 429, 429]
            ok = next(r for r in burst if r.status_code == 200)
            assert ok.headers["x-ratelimit-limit-requests"] == "2"  # the key's: tighter than the tenant's 5
            for response in burst:
                if response.status_code == 429:
                    _refused(response, 2, by_key=True)

            changed = await ops.patch(f"/v1/admin/keys/{key_id}", json={"limits": {"requests_per_minute": 3}})
            assert changed.status_code == 200, changed.text
            assert changed.json()["limits"]["requests_per_minute"] == 3
            await until(lambda: _key_limit_seen(stack, key_id, 3), what="the adapters see the new limit")
            listed = (await ops.get("/v1/admin/keys", params={"tenant": "acme"})).json()["data"]
            assert {k["id"]: k["limits"]["requests_per_minute"] for k in listed}[key_id] == 3
            # The third request of the minute now passes (over the WebSocket: the key's id travels there
            # too), the fourth does not.
            assert (await _ws(stack.url, key))["type"] == "done"
            _refused(await _chat(strict), 3, by_key=True)

            # Another key of the tenant is not held by this key's limit, only by the tenant's five: three
            # were served, two remain.
            assert [(await _chat(tenant_key)).status_code for _ in range(2)] == [200, 200]
            _refused(await _chat(tenant_key), 5, by_key=False)
            _refused(await _chat(strict), 5, by_key=False)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_a_new_key_holds_its_limit_from_its_first_request_without_waiting_for_a_poll(
    backend: str, redis_url: str, tmp_path: Path
) -> None:
    """Read your writes: the gateway that created a key accepts it when the create returns, and the
    adapters, hearing of an id they have not seen, reload before admitting it, so its own limit holds
    from the first request. Polls are an hour apart here: nothing else could bring the key."""
    async with key_stack(CONFIG, backend, redis_url, tmp_path, poll_s=3600) as stack:
        async with stack.client(ADMIN_KEY) as ops:
            created = await ops.post(
                "/v1/admin/keys", json={"tenant": "acme", "limits": {"requests_per_minute": 1}}
            )
            assert created.status_code == 201, created.text
            key, key_id = created.json()["key"], created.json()["id"]
            assert key_id not in stack.adapters.parts.admission.follower.directory.key_ids
            async with stack.client(key) as fresh:
                burst = await asyncio.gather(*(_chat(fresh) for _ in range(3)))
                assert sorted(r.status_code for r in burst) == [200, 429, 429]
                for response in burst:
                    if response.status_code == 429:
                        _refused(response, 1, by_key=True)
                revoked = await ops.delete(f"/v1/admin/keys/{key_id}")
                assert revoked.status_code == 200, revoked.text
                assert (await _chat(fresh)).status_code == 401


async def _status(http: httpx.AsyncClient, status: int) -> bool:
    return (await http.get("/v1/models")).status_code == status


async def test_key_admin_requests_are_validated_and_need_the_admin_role(stack: Stack) -> None:
    async with stack.client(ADMIN_KEY) as ops, stack.client(TENANT_KEY) as user:
        refused = await user.patch("/v1/admin/keys/key_x", json={"limits": {"requests_per_minute": 9}})
        assert refused.status_code == 403
        negative = await ops.post(
            "/v1/admin/keys", json={"tenant": "acme", "limits": {"requests_per_minute": -1}}
        )
        assert negative.status_code == 400
        unknown = await ops.patch("/v1/admin/keys/key_missing", json={"limits": {"requests_per_minute": 1}})
        assert unknown.status_code == 404
        bad_reset = await ops.patch("/v1/admin/keys/key_missing", json={"reset": ["user_daily_budget_usd"]})
        assert bad_reset.status_code == 400 and bad_reset.json()["error"]["param"] == "reset"
