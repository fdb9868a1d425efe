"""The admin audit trail from the router to a real observer: each change's entry is stored before the change,
a change the observer cannot audit is refused, and a write that fails after its entry is marked failed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import admin_pb2, admin_pb2_grpc
from atp_common.channels import open_channel
from atp_common.config import builtin_config
from atp_common.server import RunningServer
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings

TIMEOUT = 5.0
COMMON: dict[str, Any] = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1}


class Suite:
    """A router writing keys to a local file, auditing to a real observer on SQLite."""

    def __init__(self, observer: RunningServer, router: RunningServer, directory: Path):
        self.observer = observer
        self.router = router
        self.directory = directory
        self.router_channel = open_channel(router.address)
        self.observer_channel = open_channel(observer.address)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.router_channel)
        self.audit = observer_pb2_grpc.ObserverServiceStub(self.observer_channel)

    async def entries(self, tenant: str = "") -> list[observer_pb2.AuditEntry]:
        reply = await self.audit.ListAudit(observer_pb2.ListAuditRequest(tenant=tenant), timeout=TIMEOUT)
        return list(reversed(reply.entries))

    async def key_ids(self) -> set[str]:
        reply = await self.admin.ListKeys(admin_pb2.ListKeysRequest(include_revoked=True), timeout=TIMEOUT)
        return {k.key_id for k in reply.keys}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The observer's database: empty for SQLite, else a fresh PostgreSQL schema."""
    return str(request.getfixturevalue("postgres_dsn")) if request.param == "postgres" else ""


@pytest.fixture
async def suite(database_url: str, tmp_path: Path) -> AsyncIterator[Suite]:
    observer = await build_observer(
        ObserverSettings(**COMMON, database_url=database_url, sqlite_path=str(tmp_path / "observer.sqlite3")),
        config=builtin_config(""),
    )
    router = await build_router(
        RouterSettings(
            **COMMON,
            observer_addr=observer.address,
            observer_timeout_s=1.0,
            reload_on_sighup=False,
            snapshot_min_interval_s=0,
            directory_path=str(tmp_path / "tenants.json"),
        ),
        config=builtin_config("sk-audit-operator"),
    )
    running = Suite(observer, router, tmp_path / "tenants.json")
    yield running
    await running.router_channel.close()
    await running.observer_channel.close()
    await router.stop_now()
    await observer.stop_now()


OPERATOR = admin_pb2.Actor(key_id="key_op", role="operator", tenant="ops")


async def test_each_change_is_audited_with_its_actor_and_states(suite: Suite) -> None:
    created = await suite.admin.CreateKey(
        admin_pb2.CreateKeyRequest(tenant="acme", name="app", actor=OPERATOR), timeout=TIMEOUT
    )
    await suite.admin.SetTenant(
        admin_pb2.SetTenantRequest(
            tenant="acme", settings=admin_pb2.TenantSettings(daily_budget_usd=5), actor=OPERATOR
        ),
        timeout=TIMEOUT,
    )
    # Without an actor: a client inside the suite, audited as `internal`.
    await suite.admin.RevokeKey(admin_pb2.RevokeKeyRequest(key_id=created.key.key_id), timeout=TIMEOUT)
    entries = await suite.entries("acme")
    assert [(e.action, e.target) for e in entries] == [
        ("key.create", created.key.key_id),
        ("tenant.set", "acme"),
        ("key.revoke", created.key.key_id),
    ]
    create, tenant, revoke = entries
    assert (create.actor_key_id, create.actor_role, create.actor_tenant) == ("key_op", "operator", "ops")
    assert create.before_json == "" and json.loads(create.after_json)["name"] == "app"
    assert json.loads(tenant.after_json) == {"overrides": {"daily_budget_usd": 5.0}}
    assert revoke.actor_role == "internal" and json.loads(revoke.after_json)["revoked_at"] > 0
    assert created.secret not in repr(entries) and "digest" not in repr(entries)
    # Reads are not audited; an unchanged revocation is not a change.
    await suite.admin.ListKeys(admin_pb2.ListKeysRequest(), timeout=TIMEOUT)
    await suite.admin.RevokeKey(admin_pb2.RevokeKeyRequest(key_id=created.key.key_id), timeout=TIMEOUT)
    assert len(await suite.entries()) == 3


async def test_a_change_the_observer_cannot_audit_is_refused_and_not_made(suite: Suite) -> None:
    kept = await suite.admin.CreateKey(
        admin_pb2.CreateKeyRequest(tenant="acme", actor=OPERATOR), timeout=TIMEOUT
    )
    before = await suite.key_ids()
    stored = suite.directory.read_bytes()
    await suite.observer.stop_now()
    attempts = (
        (suite.admin.CreateKey, admin_pb2.CreateKeyRequest(tenant="acme", actor=OPERATOR)),
        (suite.admin.RevokeKey, admin_pb2.RevokeKeyRequest(key_id=kept.key.key_id, actor=OPERATOR)),
        (suite.admin.RotateKey, admin_pb2.RotateKeyRequest(key_id=kept.key.key_id, actor=OPERATOR)),
        (
            suite.admin.UpdateKey,
            admin_pb2.UpdateKeyRequest(
                key_id=kept.key.key_id, limits=admin_pb2.KeyLimits(requests_per_minute=1), actor=OPERATOR
            ),
        ),
        (
            suite.admin.SetTenant,
            admin_pb2.SetTenantRequest(
                tenant="acme", settings=admin_pb2.TenantSettings(daily_budget_usd=1), actor=OPERATOR
            ),
        ),
    )
    for method, request in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await method(request, timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        assert "audit log" in (refused.value.details() or "")
    assert await suite.key_ids() == before
    assert suite.directory.read_bytes() == stored


async def test_a_write_that_fails_after_its_entry_is_marked_failed(suite: Suite) -> None:
    # The file store writes a temporary file beside the directory and renames it: a folder in its place
    # makes the write fail while reads still work.
    suite.directory.with_suffix(".tmp").mkdir()
    with pytest.raises(grpc.aio.AioRpcError):
        await suite.admin.CreateKey(
            admin_pb2.CreateKeyRequest(tenant="acme", actor=OPERATOR), timeout=TIMEOUT
        )
    entries = await suite.entries("acme")
    assert [e.action for e in entries] == ["key.create", "key.create.failed"]
    assert entries[0].target == entries[1].target and entries[1].after_json == ""
    assert entries[0].target not in await suite.key_ids()


async def test_an_unknown_actor_role_is_refused(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await suite.admin.CreateKey(
            admin_pb2.CreateKeyRequest(tenant="acme", actor=admin_pb2.Actor(role="root")), timeout=TIMEOUT
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await suite.entries() == []
