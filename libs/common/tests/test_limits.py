"""The limiter and the tenant directory against the real Redis and in process: exact counts, reservations
settled from actual usage, budgets, fail modes, and revocations followed by every replica."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import pytest
from prometheus_client import REGISTRY

from atp_common.config import TenantConfig, builtin_config, hash_api_key
from atp_common.errors import BudgetExceeded, RateLimited, Unavailable
from atp_common.limits import Limiter, MemoryBackend, RedisBackend, compile_limits
from atp_common.limits.directory import (
    Directory,
    DirectoryFollower,
    FileDirectoryStore,
    KeyRecord,
    RedisDirectoryStore,
    new_api_key,
)
from atp_common.limits.limiter import reset_text


def _prefix() -> str:
    return f"t{secrets.token_hex(6)}:"


@pytest.fixture(params=["memory", "redis"])
async def backend_factory(request, redis_url):
    """Backends sharing one store: two Redis clients (two replicas) or one in-process table."""
    made = []
    if request.param == "redis":

        def make():
            backend = RedisBackend(redis_url)
            made.append(backend)
            return backend
    else:
        shared = MemoryBackend()

        def make():
            return shared

    yield make
    for backend in made:
        await backend.close()


def _limits(tenant: str = "acme", **fields) -> object:
    return compile_limits(tenant, TenantConfig(**fields))


async def test_exactly_n_requests_per_minute_under_concurrency_across_two_limiters(backend_factory):
    prefix = _prefix()
    limiters = [Limiter(backend_factory(), prefix=prefix) for _ in range(2)]
    limits = _limits(requests_per_minute=7)

    async def one(i: int) -> bool:
        try:
            await limiters[i % 2].admit(limits)
        except RateLimited as exc:
            assert 55 <= exc.retry_after <= 60
            assert "requests per minute" in exc.message
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(results) == 7


async def test_headers_report_limit_remaining_and_reset(backend_factory):
    limiter = Limiter(backend_factory(), prefix=_prefix())
    limits = _limits(requests_per_minute=5, tokens_per_minute=1000, requests_per_second=100)
    ticket = await limiter.admit(limits, tokens=120)
    headers = dict(ticket.headers)
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-reset-requests"] in ("1m0s", "59s")
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "880"


async def test_token_reservations_are_settled_with_actual_usage(backend_factory):
    limiter = Limiter(backend_factory(), prefix=_prefix())
    limiter.start()
    try:
        limits = _limits(tokens_per_minute=1000)
        first = await limiter.admit(limits, tokens=600)
        with pytest.raises(RateLimited):
            await limiter.admit(limits, tokens=600)  # 600 reserved + 600 > 1000
        limiter.settle(first, tokens=100, cost_usd=0)
        await limiter.flush()
        second = await limiter.admit(limits, tokens=600)  # 100 used + 600 <= 1000
        assert dict(second.headers)["x-ratelimit-remaining-tokens"] == "300"
    finally:
        await limiter.close()


async def test_a_request_bigger_than_the_token_window_passes_only_into_an_empty_window(backend_factory):
    limiter = Limiter(backend_factory(), prefix=_prefix())
    limits = _limits(tokens_per_minute=100)
    await limiter.admit(limits, tokens=500)
    with pytest.raises(RateLimited):
        await limiter.admit(limits, tokens=1)


async def test_budget_reserves_the_estimate_refuses_and_settles_to_the_actual_cost(backend_factory):
    limiter = Limiter(backend_factory(), prefix=_prefix())
    limiter.start()
    try:
        limits = _limits(daily_budget_usd=1.0, monthly_budget_usd=10.0)
        tickets = [await limiter.admit(limits, cost_usd=0.3) for _ in range(3)]
        with pytest.raises(BudgetExceeded) as refused:
            await limiter.admit(limits, cost_usd=0.3)
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 86400
        assert "daily budget" in refused.value.message
        for ticket in tickets:
            limiter.settle(ticket, tokens=0, cost_usd=0.05)
        await limiter.flush()
        # 0.15 spent: five more reservations of 0.15 fit in the rest (1.0), a sixth does not.
        for _ in range(5):
            await limiter.admit(limits, cost_usd=0.15)
        with pytest.raises(BudgetExceeded):
            await limiter.admit(limits, cost_usd=0.15)
    finally:
        await limiter.close()


async def test_tenants_and_windows_do_not_share_counters(backend_factory):
    limiter = Limiter(backend_factory(), prefix=_prefix())
    a, b = _limits("a", requests_per_minute=1), _limits("b", requests_per_minute=1)
    await limiter.admit(a)
    await limiter.admit(b)
    with pytest.raises(RateLimited):
        await limiter.admit(a)


async def test_no_limits_means_no_store_call():
    class Refusing(MemoryBackend):
        async def admit(self, *args, **kwargs):
            raise AssertionError("the store must not be called for a tenant without limits")

    limiter = Limiter(Refusing())
    ticket = await limiter.admit(_limits(), tokens=10, cost_usd=1.0)
    assert not ticket.settles and ticket.headers == ()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_store_down_fails_closed_visibly():
    limiter = Limiter(
        RedisBackend(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2), fail_mode="closed"
    )
    before = _sample("atp_limits_fail_closed_total")
    with pytest.raises(Unavailable) as refused:
        await limiter.admit(_limits(requests_per_minute=5))
    assert refused.value.retry_after == 1.0
    assert not limiter.healthy
    assert _sample("atp_limits_store_up", store="redis") == 0
    assert _sample("atp_limits_fail_closed_total") == before + 1
    await limiter.close()


async def test_store_down_fails_open_visibly_and_recovers(redis_url):
    limiter = Limiter(RedisBackend(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2), fail_mode="open")
    before = _sample("atp_limits_fail_open_total")
    ticket = await limiter.admit(_limits(requests_per_minute=1))
    await limiter.admit(_limits(requests_per_minute=1))
    assert not ticket.settles
    assert not limiter.healthy
    assert _sample("atp_limits_fail_open_total") == before + 2
    await limiter.close()
    # The same limiter kind against a reachable store reports healthy again after a probe.
    healthy = Limiter(RedisBackend(redis_url), probe_interval_s=0.05)
    healthy._mark(False, "simulated")
    healthy.start()
    deadline = time.monotonic() + 5
    while not healthy.healthy:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await healthy.close()


def test_reset_text_follows_openai():
    assert reset_text(20) == "20ms"
    assert reset_text(1000) == "1s"
    assert reset_text(360_000) == "6m0s"
    assert reset_text(7_500_000) == "2h5m0s"


@pytest.fixture(params=["file", "redis"])
async def directory_stores(request, tmp_path, redis_url):
    """Two stores over the same data, as a writer and a reader on different replicas."""
    if request.param == "redis":
        prefix = _prefix()
        stores = [
            RedisDirectoryStore(redis_url, prefix=prefix),
            RedisDirectoryStore(redis_url, prefix=prefix),
        ]
    else:
        stores = [FileDirectoryStore(tmp_path / "t.json"), FileDirectoryStore(tmp_path / "t.json")]
    yield stores
    for store in stores:
        await store.close()


async def test_followers_see_created_and_revoked_keys_within_a_second(directory_stores):
    writer, reader = directory_stores
    config = builtin_config(local_api_key="sk-config-key")
    changes = []
    follower = DirectoryFollower(config, reader, poll_s=0.05, on_change=changes.append)
    await follower.start()
    try:
        config_digest = hash_api_key("sk-config-key").removeprefix("sha256:")
        assert config_digest in follower.directory.keys
        _secret, digest = new_api_key()
        record = KeyRecord("key_1", digest, "acme", "user", "ci", time.time())
        await writer.put_keys([record])
        deadline = time.monotonic() + 1.0
        while digest not in follower.directory.keys:
            assert time.monotonic() < deadline, "created key not seen within a second"
            await asyncio.sleep(0.01)
        assert follower.directory.keys[digest].tenant == "acme"
        revoked_at = time.monotonic()
        await writer.put_keys([KeyRecord("key_1", digest, "acme", "user", "ci", 1.0, revoked_at=time.time())])
        # A configuration key can be revoked too.
        await writer.put_keys(
            [
                KeyRecord(
                    "cfg_x", config_digest, "local", "admin", "", 0.0, revoked_at=time.time(), source="config"
                )
            ]
        )
        while digest in follower.directory.keys or config_digest in follower.directory.keys:
            assert time.monotonic() - revoked_at < 1.0, "revocation not seen within a second"
            await asyncio.sleep(0.01)
        assert changes, "on_change was called"
    finally:
        await follower.close()


async def test_tenant_overrides_merge_over_the_configuration_and_compile_limits(directory_stores):
    writer, reader = directory_stores
    config = builtin_config(local_api_key="k")
    await writer.put_tenant("local", {"requests_per_minute": 3, "allowed_models": ["local-small"]})
    await writer.put_tenant("newco", {"daily_budget_usd": 2.5})
    state = await reader.load()
    directory = Directory(config, state)
    assert directory.tenants["local"].requests_per_minute == 3
    assert directory.config.tenants["local"].allowed_models == ["local-small"]
    assert directory.config.tenants["local"].api_keys  # the file's keys are kept
    assert [c.name for c in directory.limits["local"].checks] == ["requests per minute"]
    assert directory.limits["newco"].checks[0].limit == 2_500_000
    await writer.put_tenant("local", {})
    assert "local" not in Directory(config, await reader.load()).limits


async def test_a_burst_larger_than_the_connection_pool_waits_for_connections(redis_url):
    limiter = Limiter(RedisBackend(redis_url, max_connections=2), prefix=_prefix())
    limits = _limits(requests_per_minute=25)
    outcomes = await asyncio.gather(*(limiter.admit(limits) for _ in range(60)), return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 25
    assert all(isinstance(o, RateLimited) for o in outcomes if isinstance(o, Exception))
    assert limiter.healthy
    await limiter.close()
