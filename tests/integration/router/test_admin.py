"""AdminService on the router: keys created, listed, rotated and revoked, their limits, tenant settings, and
the snapshot carrying an allow-list set through the API. Against the real Redis and the local-file store."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator

import grpc
import pytest

from atp.router.v1 import admin_pb2, admin_pb2_grpc, router_pb2, router_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.errors import from_rpc_error
from atp_common.limits.directory import Directory, FileDirectoryStore, RedisDirectoryStore
from atp_router.server import build_server
from atp_router.settings import RouterSettings

TIMEOUT = 5.0
CONFIG_KEY = "sk-config-admin-key"


@pytest.fixture(params=["redis", "file"])
async def admin(request, redis_url, tmp_path) -> AsyncIterator[tuple]:
    prefix = f"t{secrets.token_hex(6)}:"
    settings = RouterSettings(
        port=0,
        metrics_port=None,
        observer_addr="",
        drain_delay_s=0.05,
        grace_s=1.0,
        reload_on_sighup=False,
        snapshot_min_interval_s=0.0,
        redis_url=redis_url if request.param == "redis" else "",
        redis_prefix=prefix,
        directory_path=str(tmp_path / "tenants.json"),
    )
    running = await build_server(settings, config=builtin_config(CONFIG_KEY))
    channel = open_channel(running.address)
    store = (
        RedisDirectoryStore(redis_url, prefix=prefix)
        if request.param == "redis"
        else FileDirectoryStore(tmp_path / "tenants.json")
    )
    yield admin_pb2_grpc.AdminServiceStub(channel), router_pb2_grpc.RouterServiceStub(channel), store
    await store.close()
    await channel.close()
    await running.stop_now()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def test_key_lifecycle_stores_only_digests(admin) -> None:
    stub, _router, store = admin
    created = await stub.CreateKey(
        admin_pb2.CreateKeyRequest(tenant="acme", role="user", name="ci"), timeout=TIMEOUT
    )
    assert created.secret.startswith("sk-atp-") and len(created.secret) > 40
    assert created.key.tenant == "acme" and created.key.source == "admin"
    state = await store.load()
    stored = state.keys[created.key.key_id]
    assert stored.digest == _digest(created.secret)
    assert created.secret not in repr(state)  # the key itself is stored nowhere

    listed = await stub.ListKeys(admin_pb2.ListKeysRequest(), timeout=TIMEOUT)
    ids = {k.key_id: k for k in listed.keys}
    assert created.key.key_id in ids
    assert any(k.source == "config" and k.tenant == "local" for k in listed.keys)
    assert created.secret not in str(listed)

    rotated = await stub.RotateKey(admin_pb2.RotateKeyRequest(key_id=created.key.key_id), timeout=TIMEOUT)
    assert rotated.secret != created.secret and rotated.key.rotated_from == created.key.key_id
    assert rotated.revoked.HasField("revoked_at")
    directory = Directory(builtin_config(CONFIG_KEY), await store.load())
    assert _digest(rotated.secret) in directory.keys
    assert _digest(created.secret) not in directory.keys

    # A configuration-file key can be revoked through the API as well.
    config_id = next(k.key_id for k in listed.keys if k.source == "config")
    await stub.RevokeKey(admin_pb2.RevokeKeyRequest(key_id=config_id), timeout=TIMEOUT)
    directory = Directory(builtin_config(CONFIG_KEY), await store.load())
    assert _digest(CONFIG_KEY) not in directory.keys
    active = await stub.ListKeys(admin_pb2.ListKeysRequest(tenant="local"), timeout=TIMEOUT)
    assert not active.keys
    everything = await stub.ListKeys(
        admin_pb2.ListKeysRequest(tenant="local", include_revoked=True), timeout=TIMEOUT
    )
    assert [k.key_id for k in everything.keys] == [config_id]


async def test_bad_requests_are_typed(admin) -> None:
    stub, _router, _store = admin
    for call, request, param in (
        (stub.CreateKey, admin_pb2.CreateKeyRequest(tenant="bad tenant"), "tenant"),
        (stub.CreateKey, admin_pb2.CreateKeyRequest(tenant="acme", role="root"), "role"),
        (stub.RevokeKey, admin_pb2.RevokeKeyRequest(key_id="key_missing"), "key_id"),
        (stub.SetTenant, admin_pb2.SetTenantRequest(tenant="acme", reset=["nope"]), "reset"),
        (
            stub.CreateKey,
            admin_pb2.CreateKeyRequest(tenant="acme", limits=admin_pb2.KeyLimits(requests_per_minute=-1)),
            "limits.requests_per_minute",
        ),
        (stub.UpdateKey, admin_pb2.UpdateKeyRequest(key_id="key_missing"), "key_id"),
        (
            stub.UpdateKey,
            admin_pb2.UpdateKeyRequest(key_id="key_missing", reset=["user_daily_budget_usd"]),
            "reset",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(request, timeout=TIMEOUT)
        assert from_rpc_error(failed.value).param == param


async def test_tenant_settings_merge_reset_and_reach_the_snapshot(admin) -> None:
    stub, router, _store = admin
    settings = admin_pb2.TenantSettings(requests_per_minute=10, daily_budget_usd=2.5)
    settings.allowed_models.models.append("local-large")
    reply = await stub.SetTenant(
        admin_pb2.SetTenantRequest(tenant="local", settings=settings), timeout=TIMEOUT
    )
    assert reply.settings.requests_per_minute == 10
    assert reply.settings.daily_budget_usd == 2.5
    assert list(reply.settings.allowed_models.models) == ["local-large"]
    assert reply.overridden == ["allowed_models", "daily_budget_usd", "requests_per_minute"]

    # The allow-list reaches routing: the policy snapshot names it, so adapters filter on it locally.
    call = router.WatchPolicy(router_pb2.WatchPolicyRequest(replica_id="test"), timeout=TIMEOUT)
    snapshot = (await call.read()).snapshot
    call.cancel()
    tenants = {t.tenant: list(t.allowed_models) for t in snapshot.tenants}
    assert tenants.get("local") == ["local-large"]

    # 0 removes a limit; reset goes back to the configuration's value.
    cleared = admin_pb2.SetTenantRequest(
        tenant="local", settings=admin_pb2.TenantSettings(requests_per_minute=0), reset=["allowed_models"]
    )
    reply = await stub.SetTenant(cleared, timeout=TIMEOUT)
    assert not reply.settings.HasField("requests_per_minute")
    assert not reply.settings.allowed_models.models
    got = await stub.GetTenant(admin_pb2.GetTenantRequest(tenant="local"), timeout=TIMEOUT)
    assert got.settings.daily_budget_usd == 2.5
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetTenant(admin_pb2.GetTenantRequest(tenant="nobody"), timeout=TIMEOUT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_key_limits_are_set_at_creation_changed_listed_and_kept_by_rotation(admin) -> None:
    stub, _router, store = admin
    created = await stub.CreateKey(
        admin_pb2.CreateKeyRequest(
            tenant="acme", limits=admin_pb2.KeyLimits(requests_per_minute=5, tokens_per_day=1000)
        ),
        timeout=TIMEOUT,
    )
    assert created.key.limits == admin_pb2.KeyLimits(requests_per_minute=5, tokens_per_day=1000)
    key_id = created.key.key_id
    # Unset fields stay, 0 removes one.
    updated = await stub.UpdateKey(
        admin_pb2.UpdateKeyRequest(
            key_id=key_id,
            limits=admin_pb2.KeyLimits(requests_per_second=1, requests_per_minute=2, tokens_per_day=0),
        ),
        timeout=TIMEOUT,
    )
    assert updated.key.limits == admin_pb2.KeyLimits(requests_per_second=1, requests_per_minute=2)
    # What every replica's follower loads from the store: the key's checks, compiled.
    replica = Directory(builtin_config(CONFIG_KEY), await store.load())
    limits = replica.limits_for("acme", key_id)
    assert limits is not None and [c.limit for c in limits.checks] == [1, 2]
    listed = await stub.ListKeys(admin_pb2.ListKeysRequest(tenant="acme"), timeout=TIMEOUT)
    assert [k.limits for k in listed.keys] == [updated.key.limits]
    # For a created key, reset removes (there is no file value to return to).
    reset = await stub.UpdateKey(
        admin_pb2.UpdateKeyRequest(key_id=key_id, reset=["requests_per_second"]), timeout=TIMEOUT
    )
    assert reset.key.limits == admin_pb2.KeyLimits(requests_per_minute=2)
    rotated = await stub.RotateKey(admin_pb2.RotateKeyRequest(key_id=key_id), timeout=TIMEOUT)
    assert rotated.key.limits == admin_pb2.KeyLimits(requests_per_minute=2)
    assert rotated.revoked.limits == admin_pb2.KeyLimits(requests_per_minute=2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdateKey(admin_pb2.UpdateKeyRequest(key_id=key_id), timeout=TIMEOUT)
    assert from_rpc_error(refused.value).param == "key_id"  # a revoked key cannot be changed


async def test_a_configuration_keys_limits_change_and_reset_to_the_files(admin) -> None:
    stub, _router, store = admin
    config_id = "cfg_" + _digest(CONFIG_KEY)[:16]
    updated = await stub.UpdateKey(
        admin_pb2.UpdateKeyRequest(key_id=config_id, limits=admin_pb2.KeyLimits(requests_per_minute=3)),
        timeout=TIMEOUT,
    )
    assert updated.key.source == "config" and updated.key.limits.requests_per_minute == 3
    replica = Directory(builtin_config(CONFIG_KEY), await store.load())
    assert _digest(CONFIG_KEY) in replica.keys  # a limit change is not a revocation
    limits = replica.limits_for("local", config_id)
    assert limits is not None and limits.checks[-1].limit == 3
    reset = await stub.UpdateKey(
        admin_pb2.UpdateKeyRequest(key_id=config_id, reset=["requests_per_minute"]), timeout=TIMEOUT
    )
    assert reset.key.limits == admin_pb2.KeyLimits()  # the file sets none
    replica = Directory(builtin_config(CONFIG_KEY), await store.load())
    assert replica.limits_for("local", config_id) is None
