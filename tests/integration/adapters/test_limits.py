"""The limiter and the tenant directory against the real Redis and in process: exact counts, reservations
settled from actual usage, budgets, fail modes, and revocations followed by every replica."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import pytest
from prometheus_client import REGISTRY

from atp_adapters.limits import Limiter, MemoryBackend, RedisBackend
from atp_adapters.limits.limiter import reset_text
from atp_common.config import TenantConfig, builtin_config, hash_api_key
from atp_common.errors import BudgetExceeded, RateLimited, Unavailable
from atp_common.limits import compile_limits
from atp_common.limits.directory import (
    Directory,
    DirectoryFollower,
    DirectoryState,
    FileDirectoryStore,
    KeyRecord,
    RedisDirectoryStore,
    new_api_key,
)


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
                    "cfg_x",
                    config_digest,
                    "local",
                    "operator",
                    "",
                    0.0,
                    revoked_at=time.time(),
                    source="config",
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


# Per-key limits: a key's own counters are checked with its tenant's, in the same store call.

KEY_A, KEY_B, KEY_C = "sk-key-a-0001", "sk-key-b-0001", "sk-key-c-0001"


def _keyed_directory(tenant_fields: dict, key_a_fields: dict, key_c_limits: dict) -> Directory:
    """Tenant "acme" with three keys: A from the configuration file with `key_a_fields`, B created without
    limits, C created with `key_c_limits`."""
    config = builtin_config(local_api_key="sk-local").model_copy(
        update={
            "tenants": {
                "acme": TenantConfig.model_validate(
                    {"api_keys": [{"hash": hash_api_key(KEY_A), **key_a_fields}], **tenant_fields}
                )
            }
        }
    )
    digest = lambda key: hash_api_key(key).removeprefix("sha256:")  # noqa: E731
    state = DirectoryState(
        "1",
        {
            "key_b": KeyRecord("key_b", digest(KEY_B), "acme"),
            "key_c": KeyRecord("key_c", digest(KEY_C), "acme", limits=key_c_limits),
        },
    )
    return Directory(config, state)


def _key_id(directory: Directory, key: str) -> str:
    return directory.keys[hash_api_key(key).removeprefix("sha256:")].key_id


async def test_a_key_gets_exactly_its_limit_other_keys_are_unaffected_and_the_tenant_caps_the_sum(
    backend_factory,
):
    directory = _keyed_directory({"requests_per_minute": 5}, {"requests_per_minute": 2}, {})
    prefix = _prefix()
    limiters = [Limiter(backend_factory(), prefix=prefix) for _ in range(2)]
    key_a = _key_id(directory, KEY_A)

    async def burst(key_id: str) -> list[RateLimited | None]:
        limits = directory.limits_for("acme", key_id)

        async def one(i: int) -> RateLimited | None:
            try:
                await limiters[i % 2].admit(limits)
            except RateLimited as exc:
                return exc
            return None

        return await asyncio.gather(*(one(i) for i in range(12)))

    first = await burst(key_a)
    assert first.count(None) == 2
    assert all("of API key " + key_a in e.message for e in first if e is not None)
    # B has no limits of its own: it gets the rest of the tenant's five, then the tenant's refusal.
    second = await burst("key_b")
    assert second.count(None) == 3
    refusal = next(e for e in second if e is not None)
    assert "API key" not in refusal.message and "requests per minute" in refusal.message
    assert dict(refusal.headers)["x-ratelimit-remaining-requests"] == "0"


async def test_key_token_limits_reserve_settle_and_report_the_tightest_limit(backend_factory):
    directory = _keyed_directory({"tokens_per_minute": 10_000}, {}, {"tokens_per_minute": 1000})
    limiter = Limiter(backend_factory(), prefix=_prefix())
    limiter.start()
    try:
        limits = directory.limits_for("acme", "key_c")
        first = await limiter.admit(limits, tokens=600)
        headers = dict(first.headers)
        assert headers["x-ratelimit-limit-tokens"] == "1000"  # the key's, tighter than the tenant's
        assert headers["x-ratelimit-remaining-tokens"] == "400"
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(limits, tokens=600)  # 600 reserved + 600 > the key's 1000
        assert "tokens per minute of API key key_c" in refused.value.message
        assert dict(refused.value.headers)["x-ratelimit-limit-tokens"] == "1000"
        # Another key of the tenant still has the tenant's window, less what C reserved.
        other = await limiter.admit(directory.limits_for("acme", "key_b"), tokens=600)
        assert dict(other.headers)["x-ratelimit-remaining-tokens"] == str(10_000 - 1200)
        limiter.settle(first, tokens=100, cost_usd=0)
        await limiter.flush()
        second = await limiter.admit(limits, tokens=600)  # 100 used + 600 <= 1000
        assert dict(second.headers)["x-ratelimit-remaining-tokens"] == "300"
        # The tenant's counter was settled too: 100 + 600 (B) + 600 (C again).
        third = await limiter.admit(directory.limits_for("acme", "key_b"), tokens=0)
        assert dict(third.headers)["x-ratelimit-remaining-tokens"] == str(10_000 - 1300)
    finally:
        await limiter.close()


async def test_a_key_with_limits_costs_one_store_call_under_the_tenants_hash_tag():
    class Counting(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[list[str]] = []

        async def admit(self, keys, *args, **kwargs):
            self.calls.append(list(keys))
            return await super().admit(keys, *args, **kwargs)

    directory = _keyed_directory({"requests_per_minute": 5}, {}, {"requests_per_second": 3})
    backend = Counting()
    limiter = Limiter(backend, prefix="atp:")
    await limiter.admit(directory.limits_for("acme", "key_c"))
    assert backend.calls == [["atp:{acme}:rm", "atp:{acme}:k:key_c:rs"]]
    # Neither the tenant nor the key limited: no limits at all, so the store is never called.
    bare = _keyed_directory({}, {}, {})
    assert bare.limits_for("acme", "key_b") is None and bare.limits_for("acme", "key_c") is None
    # A key id of another tenant does not bring its limits along.
    assert directory.limits_for("other", "key_c") is None


def test_key_limits_merge_the_file_with_admin_changes_and_drop_revoked_keys():
    config = builtin_config(local_api_key="sk-local").model_copy(
        update={
            "tenants": {
                "acme": TenantConfig.model_validate(
                    {
                        "api_keys": [
                            {"hash": hash_api_key(KEY_A), "requests_per_minute": 2, "tokens_per_day": 9}
                        ]
                    }
                )
            }
        }
    )
    key_a = "cfg_" + hash_api_key(KEY_A).removeprefix("sha256:")[:16]
    assert Directory(config).key_settings == {key_a: {"requests_per_minute": 2, "tokens_per_day": 9}}
    _secret, digest = new_api_key()
    state = DirectoryState(
        "2",
        {
            # A change to the file's key: its per-minute limit removed, a per-second one added.
            key_a: KeyRecord(
                key_a,
                hash_api_key(KEY_A).removeprefix("sha256:"),
                "acme",
                source="config",
                limits={"requests_per_minute": None, "requests_per_second": 1},
            ),
            "key_r": KeyRecord("key_r", digest, "acme", revoked_at=1.0, limits={"requests_per_day": 1}),
        },
    )
    directory = Directory(config, state)
    assert directory.key_settings[key_a] == {"requests_per_second": 1, "tokens_per_day": 9}
    assert [c.name for c in directory.key_limits[key_a].checks] == [
        f"requests per second of API key {key_a}",
        f"tokens per day of API key {key_a}",
    ]
    assert directory.key_settings["key_r"] == {"requests_per_day": 1}  # listed
    assert "key_r" not in directory.key_limits  # but never enforced: the key is refused anyway


async def test_followers_see_a_keys_new_limits_within_a_second(directory_stores):
    writer, reader = directory_stores
    config = builtin_config(local_api_key="sk-config-key")
    follower = DirectoryFollower(config, reader, poll_s=0.05)
    await follower.start()
    try:
        _secret, digest = new_api_key()
        record = KeyRecord("key_1", digest, "acme", "user", "ci", time.time())
        await writer.put_keys([record])
        await writer.put_keys([KeyRecord("key_1", digest, "acme", limits={"requests_per_minute": 4})])
        changed_at = time.monotonic()

        def limit() -> int | None:
            limits = follower.directory.limits_for("acme", "key_1")
            return limits.checks[0].limit if limits is not None else None

        while limit() != 4:
            assert time.monotonic() - changed_at < 1.0, "limit change not seen within a second"
            await asyncio.sleep(0.01)
    finally:
        await follower.close()
