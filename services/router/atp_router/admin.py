"""AdminService: API keys and tenant settings, written to the directory store every replica follows."""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from atp.router.v1 import admin_pb2, admin_pb2_grpc
from atp_common.config import KEY_BUDGET_FIELDS, ROLES, TenantConfig, upgrade_role
from atp_common.errors import InvalidArgument, NotFound
from atp_common.limits.directory import (
    KEY_LIMIT_FIELDS,
    KEY_POLICY_FIELDS,
    TENANT_FIELDS,
    Directory,
    DirectoryFollower,
    KeyModels,
    KeyRecord,
    config_key_id,
    effective_key_limits,
    new_api_key,
)
from atp_router.admin_scope import Caller, check_tightens
from atp_router.audit import AuditLog, key_state

__all__ = ["AdminServicer"]

_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_INT_LIMITS = KEY_LIMIT_FIELDS
_BUDGETS = ("daily_budget_usd", "monthly_budget_usd")
# Per end user: unlike a tenant's budget (0 refuses everything), 0 removes one.
_USER_BUDGETS = ("user_daily_budget_usd", "user_monthly_budget_usd")
_KEY_LISTS_AND_EXPIRY = ("allowed_models", "denied_models", "expires_at")
_LISTS = ("allowed_models", "denied_models")


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def key_info(
    record: KeyRecord,
    limits: Mapping[str, float],
    models: KeyModels | None = None,
    expires_at: float = 0.0,
) -> admin_pb2.ApiKeyInfo:
    """The listing form of a key: everything but the key, with the key's own `limits`, model lists and
    expiry in force."""
    info = admin_pb2.ApiKeyInfo(
        key_id=record.key_id,
        tenant=record.tenant,
        role=record.role,
        name=record.name,
        source=record.source,
        rotated_from=record.rotated_from,
    )
    for name, value in limits.items():
        # Rate limits are whole numbers in the proto; budgets are USD.
        setattr(info.limits, name, value if name in KEY_BUDGET_FIELDS else int(value))
    if models is not None:
        info.allowed_models.extend(sorted(models.allowed or ()))
        info.denied_models.extend(sorted(models.denied))
    if expires_at:
        info.expires_at.CopyFrom(_timestamp(expires_at))
    if record.created_at:
        info.created_at.CopyFrom(_timestamp(record.created_at))
    if record.revoked_at is not None:
        info.revoked_at.CopyFrom(_timestamp(record.revoked_at))
    return info


def tenant_settings(config: TenantConfig) -> admin_pb2.TenantSettings:
    """A tenant's effective settings as the proto message."""
    settings = admin_pb2.TenantSettings()
    for name in (*_INT_LIMITS, *_BUDGETS, *_USER_BUDGETS):
        value = getattr(config, name)
        if value is not None:
            setattr(settings, name, value)
    settings.allowed_models.models.extend(config.allowed_models)
    settings.denied_models.models.extend(config.denied_models)
    return settings


def overrides_from(settings: admin_pb2.TenantSettings) -> dict[str, Any]:
    """The fields a SetTenant sets; 0 removes a rate limit (None means unlimited in TenantConfig)."""
    out: dict[str, Any] = {}
    for name in _INT_LIMITS:
        if settings.HasField(name):
            value = getattr(settings, name)
            if value < 0:
                raise InvalidArgument(f"{name} must not be negative", param=name)
            out[name] = value or None
    for name in _BUDGETS:
        if settings.HasField(name):
            value = getattr(settings, name)
            if not value >= 0:
                raise InvalidArgument(f"{name} must not be negative", param=name)
            out[name] = value
    for name in _USER_BUDGETS:
        if settings.HasField(name):
            value = getattr(settings, name)
            if not value >= 0:
                raise InvalidArgument(f"{name} must not be negative", param=name)
            out[name] = value or None
    for name in _LISTS:
        if settings.HasField(name):
            out[name] = list(getattr(settings, name).models)
    return out


def key_limit_changes(limits: admin_pb2.KeyLimits) -> dict[str, float | None]:
    """The limits and budgets a CreateKey or UpdateKey sets; 0 removes one (None)."""
    out: dict[str, float | None] = {}
    for name in KEY_POLICY_FIELDS:
        if limits.HasField(name):
            value = getattr(limits, name)
            if not value >= 0:
                raise InvalidArgument(f"limits.{name} must not be negative", param=f"limits.{name}")
            out[name] = value or None
    return out


def _info(directory: Directory, record: KeyRecord) -> admin_pb2.ApiKeyInfo:
    return key_info(
        record,
        directory.key_settings.get(record.key_id, {}),
        directory.key_models.get(record.key_id),
        directory.key_expiry.get(record.key_id, 0.0),
    )


def _expiry(stamp: Timestamp) -> float:
    seconds: float = stamp.ToNanoseconds() / 1e9
    if seconds <= 0:
        raise InvalidArgument("expires_at must be a time after 1970", param="expires_at")
    return seconds


def _list_and_expiry_changes(request: admin_pb2.UpdateKeyRequest, record: KeyRecord) -> dict[str, Any]:
    """The record fields an UpdateKey changes besides limits: set ones, and reset ones back to None."""
    out: dict[str, Any] = {name: None for name in request.reset if name in _KEY_LISTS_AND_EXPIRY}
    for name in _LISTS:
        if request.HasField(name):
            out[name] = list(getattr(request, name).models)
    if request.HasField("expires_at"):
        out["expires_at"] = _expiry(request.expires_at)
    return out


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Writes go to the store and bump its version; this router's follower is refreshed at once so a
    read after a write sees it, and every other replica picks the change up within its poll interval."""

    def __init__(self, follower: DirectoryFollower, audit: AuditLog):
        self._follower = follower
        self._audit = audit

    def _state_of(self, record: KeyRecord) -> dict[str, Any]:
        return key_state(record, self._follower.directory.key_settings.get(record.key_id, {}))

    def _file_limits(self, record: KeyRecord) -> Mapping[str, float]:
        """A configuration-file key's limits as the file sets them (none for a created key)."""
        if record.source == "config":
            for tenant in self._follower.config.tenants.values():
                for key in tenant.api_keys:
                    if config_key_id(key.hash.removeprefix("sha256:")) == record.key_id:
                        return key.limits
        return {}

    async def _state(self) -> Directory:
        await self._follower.refresh()
        return self._follower.directory

    async def _all_keys(self) -> dict[str, KeyRecord]:
        directory = await self._state()
        records = {r.key_id: r for r in directory.config_keys(self._follower.config)}
        records.update(directory.state.keys)
        return records

    async def CreateKey(
        self, request: admin_pb2.CreateKeyRequest, context: aio.ServicerContext
    ) -> admin_pb2.CreateKeyResponse:
        if not _TENANT_NAME.match(request.tenant):
            raise InvalidArgument("tenant must be 1-64 letters, digits, '.', '_' or '-'", param="tenant")
        role = upgrade_role(request.role or "user", f"created in {request.tenant}")
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}", param="role")
        caller = Caller.of(request)
        caller.administers(request.tenant)
        caller.may_give(role)
        limits = {k: v for k, v in key_limit_changes(request.limits).items() if v is not None}
        secret, digest = new_api_key()
        record = KeyRecord(
            key_id="key_" + secrets.token_hex(8),
            digest=digest,
            tenant=request.tenant,
            role=role,
            name=request.name[:128],
            created_at=time.time(),
            limits=limits,
            allowed_models=list(request.allowed_models) or None,
            denied_models=list(request.denied_models) or None,
            expires_at=_expiry(request.expires_at) if request.HasField("expires_at") else None,
        )
        await self._audit.change(
            caller,
            "key.create",
            (record.tenant, record.key_id),
            None,
            key_state(record, limits),
            lambda: self._follower.store.put_keys([record]),
        )
        await self._follower.refresh()
        return admin_pb2.CreateKeyResponse(key=_info(self._follower.directory, record), secret=secret)

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: aio.ServicerContext
    ) -> admin_pb2.ListKeysResponse:
        tenant = Caller.of(request).list_scope(request.tenant)
        records = await self._all_keys()
        directory = self._follower.directory
        keys = [
            _info(directory, r)
            for r in sorted(records.values(), key=lambda r: (r.tenant, r.created_at, r.key_id))
            if (not tenant or r.tenant == tenant) and (request.include_revoked or r.revoked_at is None)
        ]
        return admin_pb2.ListKeysResponse(keys=keys)

    async def _find(self, key_id: str, caller: Caller) -> KeyRecord:
        """The key `caller` asks to change, refused when it is outside the caller's scope."""
        record = (await self._all_keys()).get(key_id)
        if record is None:
            raise NotFound(f"no key {key_id!r}", param="key_id")
        caller.administers_key(record)
        return record

    async def RotateKey(
        self, request: admin_pb2.RotateKeyRequest, context: aio.ServicerContext
    ) -> admin_pb2.RotateKeyResponse:
        caller = Caller.of(request)
        old = await self._find(request.key_id, caller)
        if old.revoked_at is not None:
            raise InvalidArgument("a revoked key cannot be rotated", param="key_id")
        now = time.time()
        # The new key keeps the old one's limits (its own from here on; counters start afresh).
        limits = self._follower.directory.key_settings.get(old.key_id, {})
        models = self._follower.directory.key_models.get(old.key_id)
        secret, digest = new_api_key()
        new = KeyRecord(
            key_id="key_" + secrets.token_hex(8),
            digest=digest,
            tenant=old.tenant,
            role=old.role,
            name=old.name,
            created_at=now,
            rotated_from=old.key_id,
            limits=dict(limits),
            allowed_models=sorted(models.allowed or ()) if models else None,
            denied_models=sorted(models.denied) if models else None,
            expires_at=self._follower.directory.key_expiry.get(old.key_id),
        )
        revoked = dataclasses.replace(old, revoked_at=now)
        # One MULTI: the new key and the revocation become visible together.
        await self._audit.change(
            caller,
            "key.rotate",
            (old.tenant, old.key_id),
            self._state_of(old),
            {**self._state_of(revoked), "replaced_by": key_state(new, limits)},
            lambda: self._follower.store.put_keys([new, revoked]),
        )
        directory = self._follower.directory
        await self._follower.refresh()
        return admin_pb2.RotateKeyResponse(
            key=_info(self._follower.directory, new), secret=secret, revoked=_info(directory, revoked)
        )

    async def RevokeKey(
        self, request: admin_pb2.RevokeKeyRequest, context: aio.ServicerContext
    ) -> admin_pb2.RevokeKeyResponse:
        caller = Caller.of(request)
        record = await self._find(request.key_id, caller)
        if record.revoked_at is None:
            revoked = dataclasses.replace(record, revoked_at=time.time())
            await self._audit.change(
                caller,
                "key.revoke",
                (record.tenant, record.key_id),
                self._state_of(record),
                self._state_of(revoked),
                lambda: self._follower.store.put_keys([revoked]),
            )
            record = revoked
            await self._follower.refresh()
        return admin_pb2.RevokeKeyResponse(key=_info(self._follower.directory, record))

    async def UpdateKey(
        self, request: admin_pb2.UpdateKeyRequest, context: aio.ServicerContext
    ) -> admin_pb2.UpdateKeyResponse:
        unknown = [f for f in request.reset if f not in (*KEY_POLICY_FIELDS, *_KEY_LISTS_AND_EXPIRY)]
        if unknown:
            raise InvalidArgument(f"cannot reset unknown limits {unknown}", param="reset")
        changes = key_limit_changes(request.limits)
        caller = Caller.of(request)
        record = await self._find(request.key_id, caller)
        if record.revoked_at is not None:
            raise InvalidArgument("a revoked key cannot be changed", param="key_id")
        # The record keeps changes only: for a configuration-file key, on top of the file's values (None
        # removes one the file sets, `reset` returns to the file); a created key has no file values.
        stored = dict(record.limits)
        for name in request.reset:
            stored.pop(name, None)
        stored.update(changes)
        if record.source != "config":
            stored = {k: v for k, v in stored.items() if v is not None}
        updated = dataclasses.replace(record, limits=stored, **_list_and_expiry_changes(request, record))
        # Written like a revocation: the version bump carries it to every replica within a second.
        await self._audit.change(
            caller,
            "key.update",
            (record.tenant, record.key_id),
            self._state_of(record),
            key_state(updated, effective_key_limits(self._file_limits(record), stored)),
            lambda: self._follower.store.put_keys([updated]),
        )
        await self._follower.refresh()
        return admin_pb2.UpdateKeyResponse(key=_info(self._follower.directory, updated))

    async def GetTenant(
        self, request: admin_pb2.GetTenantRequest, context: aio.ServicerContext
    ) -> admin_pb2.GetTenantResponse:
        directory = await self._state()
        config = directory.tenants.get(request.tenant)
        if config is None:
            raise NotFound(f"no tenant {request.tenant!r}", param="tenant")
        overridden = sorted(directory.state.tenants.get(request.tenant, {}))
        return admin_pb2.GetTenantResponse(
            tenant=request.tenant, settings=tenant_settings(config), overridden=overridden
        )

    async def SetTenant(
        self, request: admin_pb2.SetTenantRequest, context: aio.ServicerContext
    ) -> admin_pb2.SetTenantResponse:
        if not _TENANT_NAME.match(request.tenant):
            raise InvalidArgument("tenant must be 1-64 letters, digits, '.', '_' or '-'", param="tenant")
        unknown = [f for f in request.reset if f not in TENANT_FIELDS]
        if unknown:
            raise InvalidArgument(f"cannot reset unknown fields {unknown}", param="reset")
        caller = Caller.of(request)
        caller.administers(request.tenant)
        directory = await self._state()
        changes = overrides_from(request.settings)
        check_tightens(caller, directory.tenants.get(request.tenant, TenantConfig()), changes, request.reset)
        before = dict(directory.state.tenants.get(request.tenant, {}))
        overrides = dict(before)
        for name in request.reset:
            overrides.pop(name, None)
        overrides.update(changes)
        base = self._follower.config.tenants.get(request.tenant, TenantConfig())
        try:
            merged = TenantConfig.model_validate({**base.model_dump(), **overrides})
        except ValueError as exc:
            raise InvalidArgument(f"invalid tenant settings: {exc}") from exc
        await self._audit.change(
            caller,
            "tenant.set",
            (request.tenant, request.tenant),
            {"overrides": before},
            {"overrides": overrides},
            lambda: self._follower.store.put_tenant(request.tenant, overrides),
        )
        await self._follower.refresh()
        return admin_pb2.SetTenantResponse(
            tenant=request.tenant, settings=tenant_settings(merged), overridden=sorted(overrides)
        )
