"""The HTTP admin API: keys, their limits and tenant settings (tenant_admin for its own tenant, operator for
any), usage, observations, decision explanations (any key for its own tenant; an operator for any) and the
audit log of admin actions. Off the hot path, so plain FastAPI routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Request
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from atp.observer.v1 import observer_pb2
from atp.router.v1 import admin_pb2
from atp_common.audit_json import audit_entry_json
from atp_common.config import KEY_POLICY_FIELDS, LEGACY_ADMIN_ROLE, Role
from atp_common.errors import InvalidArgument, PermissionDenied, Unavailable
from atp_gateway.auth import Principal, api_key_from_headers
from atp_gateway.control import ControlClient
from atp_gateway.errors import error_from_validation
from atp_gateway.gateway import Gateway
from atp_gateway.ids import check_id, check_time_range
from atp_gateway.usage_grouping import parse_group_by

T = TypeVar("T")

__all__ = [
    "actor_of",
    "admin_router",
    "control_of",
    "manager_of",
    "operator_of",
    "principal_of",
    "scoped_tenant",
]

PREFIX = "/v1/admin"
_MAX_OBSERVATIONS = 1000
_MAX_AUDIT = 500
_MANAGERS: tuple[Role, ...] = ("tenant_admin", "operator")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RateLimitChanges(_Body):
    """Rate limits to set: null or absent leaves one as it is, 0 removes it."""

    requests_per_second: int | None = Field(None, ge=0)
    requests_per_minute: int | None = Field(None, ge=0)
    requests_per_day: int | None = Field(None, ge=0)
    tokens_per_second: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)
    tokens_per_day: int | None = Field(None, ge=0)


class KeyLimitsBody(_RateLimitChanges):
    """A key's own rate limits and budgets (USD per UTC day / month), on top of its tenant's."""

    daily_budget_usd: float | None = Field(None, ge=0)
    monthly_budget_usd: float | None = Field(None, ge=0)

    def message(self) -> admin_pb2.KeyLimits:
        return admin_pb2.KeyLimits(**self.model_dump(exclude_none=True))


class CreateKeyBody(_Body):
    tenant: str
    # `admin` is the deprecated name of `operator`.
    role: Literal["user", "tenant_admin", "operator", "admin"] = "user"
    name: str = Field("", max_length=128)
    limits: KeyLimitsBody = Field(default_factory=KeyLimitsBody)
    allowed_models: list[str] = Field(default_factory=list, max_length=256)
    denied_models: list[str] = Field(default_factory=list, max_length=256)
    expires_at: datetime | None = None

    def message(self, actor: admin_pb2.Actor) -> admin_pb2.CreateKeyRequest:
        request = admin_pb2.CreateKeyRequest(
            actor=actor,
            tenant=self.tenant,
            role=self.role,
            name=self.name,
            limits=self.limits.message(),
            allowed_models=self.allowed_models,
            denied_models=self.denied_models,
        )
        if self.expires_at is not None:
            request.expires_at.FromDatetime(_utc(self.expires_at))
        return request

    @field_validator("role")
    @classmethod
    def _upgrade(cls, role: str) -> str:
        return "operator" if role == LEGACY_ADMIN_ROLE else role


class UpdateKeyBody(_Body):
    """Limits, model lists and expiry to set; `reset` names those that go back to the configuration
    file's value (for a key created through this API: removed)."""

    limits: KeyLimitsBody = Field(default_factory=KeyLimitsBody)
    allowed_models: list[str] | None = Field(None, max_length=256)
    denied_models: list[str] | None = Field(None, max_length=256)
    expires_at: datetime | None = None
    reset: list[str] = Field(default_factory=list)

    def message(self, key_id: str, actor: admin_pb2.Actor) -> admin_pb2.UpdateKeyRequest:
        request = admin_pb2.UpdateKeyRequest(
            key_id=key_id, limits=self.limits.message(), reset=self.reset, actor=actor
        )
        for name in ("allowed_models", "denied_models"):
            value = getattr(self, name)
            if value is not None:
                getattr(request, name).models.extend(value)
                getattr(request, name).SetInParent()
        if self.expires_at is not None:
            request.expires_at.FromDatetime(_utc(self.expires_at))
        return request


def _utc(at: datetime) -> datetime:
    # A time without a zone is UTC, as in the configuration file.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class TenantBody(_RateLimitChanges):
    """Fields to set; null or absent leaves a field as it is; 0 removes a rate limit; `reset` names fields
    that go back to the configuration file's value."""

    daily_budget_usd: float | None = Field(None, ge=0)
    monthly_budget_usd: float | None = Field(None, ge=0)
    # Each end user's own budgets within the tenant; 0 removes one.
    user_daily_budget_usd: float | None = Field(None, ge=0)
    user_monthly_budget_usd: float | None = Field(None, ge=0)
    allowed_models: list[str] | None = None
    denied_models: list[str] | None = None
    reset: list[str] = Field(default_factory=list)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _dict(message: Message) -> dict[str, Any]:
    fields: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return fields


def _key(info: admin_pb2.ApiKeyInfo, secret: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"object": "api_key", "id": info.key_id, **_dict(info)}
    out.pop("key_id", None)
    # Every limit, null when unset, as numbers (the proto JSON mapping would make int64 strings).
    out["limits"] = {
        name: getattr(info.limits, name) if info.limits.HasField(name) else None
        for name in KeyLimitsBody.model_fields
    }
    out["allowed_models"] = list(info.allowed_models)
    out["denied_models"] = list(info.denied_models)
    out["expires_at"] = info.expires_at.ToJsonString() if info.HasField("expires_at") else None
    if secret:
        out["key"] = secret  # the only time the key is ever shown
    return out


def _tenant(tenant: str, settings: admin_pb2.TenantSettings, overridden: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"object": "tenant", "tenant": tenant}
    for field in (*KEY_POLICY_FIELDS, "user_daily_budget_usd", "user_monthly_budget_usd"):
        out[field] = getattr(settings, field) if settings.HasField(field) else None
    out["allowed_models"] = list(settings.allowed_models.models)
    out["denied_models"] = list(settings.denied_models.models)
    out["overridden"] = list(overridden)
    return out


async def _parse(request: Request, model: type[_Body], gateway: Gateway) -> Any:
    body = await request.body()
    if len(body) > gateway.settings.max_body_bytes:
        raise InvalidArgument("The request body is too large.")
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise error_from_validation(exc) from None


def principal_of(gateway: Gateway, request: Request) -> Principal:
    """The caller's principal from its API key (any role)."""
    headers = request.headers
    key = api_key_from_headers(
        headers.get("authorization", "").encode() or None,
        (headers.get("api-key") or headers.get("x-api-key") or "").encode() or None,
    )
    return gateway.keys.authenticate(key)


def manager_of(gateway: Gateway, request: Request) -> Principal:
    """The caller's principal, refused unless it administers keys: a tenant_admin or an operator key."""
    principal = principal_of(gateway, request)
    if principal.role not in _MANAGERS:
        raise PermissionDenied("This endpoint needs a tenant_admin or operator key.")
    return principal


def operator_of(gateway: Gateway, request: Request) -> Principal:
    """The caller's principal, refused unless it is an operator key (the endpoint covers every tenant)."""
    principal = principal_of(gateway, request)
    if principal.role != "operator":
        raise PermissionDenied("This endpoint needs an operator key.")
    return principal


def actor_of(principal: Principal) -> admin_pb2.Actor:
    """Who asks, for the router: it scopes the change and names the actor in the audit log."""
    return admin_pb2.Actor(key_id=principal.key_id, role=principal.role, tenant=principal.tenant)


def control_of(gateway: Gateway) -> ControlClient:
    """The control-plane clients, once the gateway has started."""
    if gateway.control is None:
        raise Unavailable("The gateway is starting.")
    return gateway.control


async def write(gateway: Gateway, method: Callable[[Any], Awaitable[T]], request: Message) -> T:
    """An admin change through the router, then this gateway's directory reloaded before the reply, so
    the caller can use what it just wrote at once (other replicas follow within directory_poll_s)."""
    reply = await control_of(gateway).call(method, request)
    if gateway.directory is not None:
        await gateway.directory.catch_up()
    return reply


def scoped_tenant(principal: Principal, asked: str | None) -> str:
    """The tenant a call may read: a user or tenant_admin key only ever sees its own tenant; naming another
    is refused, not silently narrowed."""
    if principal.role == "operator":
        return asked if asked is not None else principal.tenant
    if asked is not None and asked != principal.tenant:
        raise PermissionDenied("A key can only read its own tenant's data.", param="tenant")
    return principal.tenant


def admin_router(gateway: Gateway) -> APIRouter:
    """The /v1/admin routes over `gateway`'s control clients."""
    # Left out of the OpenAPI document, which describes the OpenAI-compatible surface clients generate
    # code from; the README documents these operations.
    router = APIRouter(prefix=PREFIX, tags=["admin"], include_in_schema=False)
    _key_routes(router, gateway)
    _key_change_routes(router, gateway)
    _tenant_routes(router, gateway)
    _usage_route(router, gateway)
    _observation_routes(router, gateway)
    _audit_route(router, gateway)
    return router


def _key_routes(router: APIRouter, gateway: Gateway) -> None:
    """Create, list and rotate API keys (a tenant_admin or an operator key)."""

    @router.post("/keys", status_code=201, summary="Create an API key (the key is returned once)")
    async def create_key(request: Request) -> Response:
        principal = manager_of(gateway, request)
        body = await _parse(request, CreateKeyBody, gateway)
        client = control_of(gateway)
        reply = await write(
            gateway,
            client.admin.CreateKey,
            body.message(actor_of(principal)),
        )
        return _json(_key(reply.key, reply.secret), 201)

    @router.get("/keys", summary="List API keys (never the keys themselves)")
    async def list_keys(request: Request, tenant: str = "", include_revoked: bool = False) -> Response:
        principal = manager_of(gateway, request)
        if tenant:
            check_id(tenant, "tenant")
        client = control_of(gateway)
        query = admin_pb2.ListKeysRequest(
            tenant=tenant, include_revoked=include_revoked, actor=actor_of(principal)
        )
        reply = await client.call(client.admin.ListKeys, query)
        return _json({"object": "list", "data": [_key(k) for k in reply.keys]})

    @router.post("/keys/{key_id}/rotate", summary="Replace a key with a new one and revoke the old one")
    async def rotate_key(request: Request, key_id: str) -> Response:
        principal = manager_of(gateway, request)
        check_id(key_id, "key_id")
        client = control_of(gateway)
        reply = await write(
            gateway,
            client.admin.RotateKey,
            admin_pb2.RotateKeyRequest(key_id=key_id, actor=actor_of(principal)),
        )
        return _json({**_key(reply.key, reply.secret), "revoked": _key(reply.revoked)})


def _key_change_routes(router: APIRouter, gateway: Gateway) -> None:
    """Change and revoke API keys (a tenant_admin or an operator key)."""

    @router.patch("/keys/{key_id}", summary="Change a key's own limits, budgets, model lists and expiry")
    async def update_key(request: Request, key_id: str) -> Response:
        principal = manager_of(gateway, request)
        check_id(key_id, "key_id")
        body: UpdateKeyBody = await _parse(request, UpdateKeyBody, gateway)
        client = control_of(gateway)
        reply = await write(
            gateway,
            client.admin.UpdateKey,
            body.message(key_id, actor_of(principal)),
        )
        return _json(_key(reply.key))

    @router.delete("/keys/{key_id}", summary="Revoke a key (refused by every gateway within a second)")
    async def revoke_key(request: Request, key_id: str) -> Response:
        principal = manager_of(gateway, request)
        check_id(key_id, "key_id")
        client = control_of(gateway)
        reply = await write(
            gateway,
            client.admin.RevokeKey,
            admin_pb2.RevokeKeyRequest(key_id=key_id, actor=actor_of(principal)),
        )
        return _json(_key(reply.key))


def _tenant_routes(router: APIRouter, gateway: Gateway) -> None:
    """Read a tenant's effective settings (any key of it), and change them (its manager)."""

    @router.get("/tenants/{tenant}", summary="A tenant's effective limits, budgets and models")
    async def get_tenant(request: Request, tenant: str) -> Response:
        principal = principal_of(gateway, request)
        check_id(tenant, "tenant")
        tenant = scoped_tenant(principal, tenant)
        client = control_of(gateway)
        reply = await client.call(client.admin.GetTenant, admin_pb2.GetTenantRequest(tenant=tenant))
        return _json(_tenant(reply.tenant, reply.settings, reply.overridden))

    @router.patch("/tenants/{tenant}", summary="Set a tenant's limits, budgets and allowed models")
    async def set_tenant(request: Request, tenant: str) -> Response:
        principal = manager_of(gateway, request)
        check_id(tenant, "tenant")
        scoped_tenant(principal, tenant)
        body: TenantBody = await _parse(request, TenantBody, gateway)
        settings = admin_pb2.TenantSettings()
        for name, value in body.model_dump(exclude={"reset"}).items():
            if value is None:
                continue
            if isinstance(value, list):
                getattr(settings, name).models.extend(value)
                getattr(settings, name).SetInParent()
            else:
                setattr(settings, name, value)
        client = control_of(gateway)
        reply = await write(
            gateway,
            client.admin.SetTenant,
            admin_pb2.SetTenantRequest(
                tenant=tenant, settings=settings, reset=body.reset, actor=actor_of(principal)
            ),
        )
        return _json(_tenant(reply.tenant, reply.settings, reply.overridden))


def _usage_route(router: APIRouter, gateway: Gateway) -> None:
    """Usage and cost, grouped, over a time range."""

    @router.get(
        "/usage",
        summary="Usage and cost over a time range (own tenant unless operator), grouped by any of tenant, key, "
        "user, route, model, deployment, tag, and by day or hour; grouped by tag, an observation counts once "
        "under each of its tags",
    )
    async def usage(
        request: Request,
        tenant: str | None = None,
        start: int | None = None,
        end: int | None = None,
        group_by: str = "model",
    ) -> Response:
        principal = principal_of(gateway, request)
        if tenant is not None and tenant != "*":
            check_id(tenant, "tenant")
        check_time_range(start, end)
        groups, bucket_s = parse_group_by(group_by, start, end)
        scoped = scoped_tenant(principal, tenant)
        if principal.role == "operator" and tenant == "*":
            scoped = ""  # every tenant
        query = observer_pb2.QueryUsageRequest(tenant=scoped, group_by=groups, bucket_seconds=bucket_s)
        if start is not None:
            query.start.FromSeconds(start)
        if end is not None:
            query.end.FromSeconds(end)
        reply = await control_of(gateway).query_usage(query)
        return _json({"object": "list", "data": [_dict(row) for row in reply.rows]})


def _observation_routes(router: APIRouter, gateway: Gateway) -> None:
    """Recent observations and the explanation of one routing decision."""

    @router.get("/observations", summary="Recent observations (own tenant unless operator)")
    async def observations(
        request: Request,
        tenant: str | None = None,
        limit: int = 50,
        before: str | None = None,
        before_observation_id: str = "",
        model: str = "",
        route: str = "",
        status: Literal["", "ok", "error", "partial", "cancelled"] = "",
        after: str | None = None,
    ) -> Response:
        """Newest first, optionally only of one model, route or status, or since `after`. The next page:
        `before` = the last item's started_at (as returned) and `before_observation_id` = its
        observation_id."""
        principal = principal_of(gateway, request)
        if tenant is not None:
            check_id(tenant, "tenant")
        if before_observation_id:
            check_id(before_observation_id, "before_observation_id")
        scoped = scoped_tenant(principal, tenant)
        if not 1 <= limit <= _MAX_OBSERVATIONS:
            raise InvalidArgument(f"limit must be between 1 and {_MAX_OBSERVATIONS}", param="limit")
        query = observer_pb2.ListObservationsRequest(
            tenant=scoped,
            limit=limit,
            before_observation_id=before_observation_id,
            model=model,
            route=route,
            # The enum's own name (the query's values are its lower-case suffixes).
            status=f"OBSERVATION_STATUS_{status.upper()}" if status else None,
        )
        for name, value in (("before", before), ("after", after)):
            if value is not None:
                try:
                    getattr(query, name).FromJsonString(value)
                except ValueError as exc:
                    raise InvalidArgument(f"{name} must be an RFC 3339 timestamp: {exc}", param=name) from exc
        reply = await control_of(gateway).list_observations(query)
        # Defence in depth: whatever the observer returns, nothing of another tenant leaves here.
        data = [_dict(o) for o in reply.observations if o.tenant == scoped]
        return _json({"object": "list", "data": data})

    @router.get("/decisions/{decision_id}", summary="Explain a routing decision (own tenant unless operator)")
    async def explain(request: Request, decision_id: str) -> Response:
        principal = principal_of(gateway, request)
        check_id(decision_id, "decision_id")
        reply = await control_of(gateway).explain(decision_id)
        if principal.role != "operator" and reply.tenant != principal.tenant:
            # Refused like every other endpoint naming another tenant (decision ids are unguessable, so
            # this tells a caller nothing it did not hold already).
            raise PermissionDenied("A key can only read its own tenant's data.", param="decision_id")
        return _json({"object": "decision", **_dict(reply)})


def _audit_route(router: APIRouter, gateway: Gateway) -> None:
    """The audit log of admin actions, newest first."""

    @router.get("/audit", summary="Admin actions, newest first (own tenant for a tenant_admin)")
    async def audit(
        request: Request,
        tenant: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int = 100,
        before: int = 0,
    ) -> Response:
        """Who changed what, when, with the state before and after. An operator sees every tenant's entries
        unless it names one; the next page: `before` = the last entry's seq (`next_before`)."""
        principal = manager_of(gateway, request)
        if tenant is not None and tenant != "*":
            check_id(tenant, "tenant")
        if principal.role == "operator":
            scoped = "" if tenant in (None, "*") else tenant
        else:
            scoped = scoped_tenant(principal, tenant)
        if not 1 <= limit <= _MAX_AUDIT:
            raise InvalidArgument(f"limit must be between 1 and {_MAX_AUDIT}", param="limit")
        if before < 0:
            raise InvalidArgument("before must be a positive seq", param="before")
        query = observer_pb2.ListAuditRequest(tenant=scoped, limit=limit, before_seq=before)
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                try:
                    getattr(query, name).FromJsonString(value)
                except ValueError as exc:
                    raise InvalidArgument(f"{name} must be an RFC 3339 timestamp: {exc}", param=name) from exc
        reply = await control_of(gateway).list_audit(query)
        # Defence in depth, as for observations: nothing of another tenant leaves for a tenant_admin.
        data = [audit_entry_json(e) for e in reply.entries if not scoped or e.tenant == scoped]
        next_before = reply.entries[-1].seq if len(reply.entries) == limit else None
        return _json({"object": "list", "data": data, "next_before": next_before})
