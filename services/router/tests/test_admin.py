"""AdminService on the router: keys created, listed, rotated and revoked, tenant settings, and the snapshot
carrying an allow-list set through the API. Against the real Redis and the local-file store."""

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
