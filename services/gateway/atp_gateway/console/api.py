"""Admin endpoints the console reads beside the admin API's own: who is signed in, usage over time, budget
burn-down, a decision's feedback, the router's policy state and the suite's health. Same keys, same scopes."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from starlette.responses import Response

from atp.observer.v1 import observer_pb2
from atp.router.v1 import admin_pb2, router_pb2
from atp_common.errors import AtpError, InvalidArgument
from atp_gateway.admin import PREFIX, actor_of, control_of, operator_of, principal_of, scoped_tenant
from atp_gateway.console.budgets import budgets_in_force, usage_request
from atp_gateway.gateway import Gateway

__all__ = ["console_api"]

BUCKETS = {"hour": 3600, "day": 86_400}
# How far back a series reaches by default: a day of hours, a month of days.
DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30)}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), 200, media_type="application/json")


def _dict(message: Message) -> dict[str, Any]:
    fields: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return fields


def _stamp(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(f"{name} must be an RFC 3339 timestamp: {exc}", param=name) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _usage_row(row: observer_pb2.UsageRow) -> dict[str, Any]:
    # Numbers as numbers (the proto JSON mapping would make int64 strings).
    return {
        "bucket_start": row.bucket_start.ToJsonString() if row.HasField("bucket_start") else None,
        "tenant": row.tenant,
        "route": row.route,
        "model": row.model,
        "key_id": row.key_id,
        "end_user": row.end_user,
        "deployment": row.deployment,
        "tag_key": row.tag_key,
        "tag_value": row.tag_value,
        "requests": row.requests,
        "errors": row.errors,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_usd": row.cost_usd,
        "cost_nano_usd": row.cost_nano_usd,
        "mean_latency_ms": row.mean_latency_ms,
    }


def _arm(arm: router_pb2.ArmState) -> dict[str, Any]:
    """An arm's learned statistics: the mean reward and its standard error (the uncertainty)."""
    pulls = arm.pulls
    mean = arm.reward_sum / pulls if pulls else 0.0
    variance = max(arm.reward_sq_sum / pulls - mean * mean, 0.0) if pulls else 0.0
    return {
        "model": arm.model,
        "pulls": pulls,
        "mean_reward": mean,
        "uncertainty": math.sqrt(variance / pulls) if pulls else None,
        "alpha": arm.alpha,
        "beta": arm.beta,
        "mean_cost_usd": arm.mean_cost_usd,
        "mean_latency_ms": arm.mean_latency_ms,
    }


def _artifact(route: router_pb2.RoutePolicy) -> dict[str, Any] | None:
    """The trained router a route started from, with its training record; None without one."""
    if not route.artifact_digest:
        return None
    try:
        training = orjson.loads(route.artifact_training) if route.artifact_training else {}
    except orjson.JSONDecodeError:
        training = {}
    return {
        "digest": route.artifact_digest,
        "semantic_dims": len(route.semantic.offset),
        "training": training,
    }


def _snapshot(snapshot: router_pb2.PolicySnapshot) -> dict[str, Any]:
    generated = snapshot.generated_at.ToDatetime(tzinfo=UTC) if snapshot.HasField("generated_at") else None
    return {
        "version": snapshot.version,
        "generated_at": generated.isoformat() if generated else None,
        "age_s": (datetime.now(UTC) - generated).total_seconds() if generated else None,
        "config_digest": snapshot.config_digest,
        "default_route": snapshot.default_route,
        "routes": [
            {
                "name": route.name,
                "policy": router_pb2.PolicyKind.Name(route.kind).removeprefix("POLICY_KIND_").lower(),
                "candidates": list(route.candidates),
                "exploration": route.exploration,
                "arms": [_arm(arm) for arm in route.arms],
                "tenants_learning": len(route.tenant_arms),
                "artifact": _artifact(route),
            }
            for route in snapshot.routes
        ],
        "exclusions": [
            {
                "model": e.model,
                "reason": e.reason,
                "until": e.until.ToJsonString() if e.HasField("until") else None,
            }
            for e in snapshot.exclusions
        ],
    }


def console_api(gateway: Gateway) -> APIRouter:
    """The console's extra /v1/admin routes over `gateway`'s control clients."""
    router = APIRouter(prefix=PREFIX, tags=["admin"], include_in_schema=False)
    _identity_routes(router, gateway)
    _usage_routes(router, gateway)
    _suite_routes(router, gateway)
    return router


def _identity_routes(router: APIRouter, gateway: Gateway) -> None:
    """Who is signed in, and which tenants they may see."""

    @router.get("/whoami", summary="The signed-in key's tenant and role (never the key)")
    async def whoami(request: Request) -> Response:
        principal = principal_of(gateway, request)
        return _json(
            {
                "object": "principal",
                "tenant": principal.tenant,
                "role": principal.role,
                "key_name": principal.key_name,
                "key_id": principal.key_id,
            }
        )

    @router.get("/tenants", summary="Tenants the caller may see: every known tenant for an operator")
    async def tenants(request: Request) -> Response:
        principal = principal_of(gateway, request)
        if principal.role != "operator":
            return _json({"object": "list", "data": [principal.tenant]})
        client = control_of(gateway)
        keys = await client.call(client.admin.ListKeys, admin_pb2.ListKeysRequest(actor=actor_of(principal)))
        names = set(gateway.config.tenants) | {key.tenant for key in keys.keys} | {principal.tenant}
        return _json({"object": "list", "data": sorted(names)})


def _usage_routes(router: APIRouter, gateway: Gateway) -> None:
    """Usage over time, budget burn-down and a decision's feedback: own tenant unless operator."""

    @router.get("/usage/series", summary="Usage and cost per hour or day (own tenant unless operator)")
    async def usage_series(
        request: Request,
        tenant: str | None = None,
        bucket: Literal["hour", "day"] = "hour",
        start: str | None = None,
        end: str | None = None,
        group_by: str = "model",
    ) -> Response:
        principal = principal_of(gateway, request)
        # "*" is every tenant, for an operator; anyone else naming it is refused like any other tenant.
        scoped = "" if principal.role == "operator" and tenant == "*" else scoped_tenant(principal, tenant)
        since = _stamp(start, "start") or datetime.now(UTC) - DEFAULT_SPAN[bucket]
        groups = [g for g in group_by.split(",") if g]
        query = usage_request(scoped, since, _stamp(end, "end"), groups, BUCKETS[bucket])
        reply = await control_of(gateway).query_usage(query)
        return _json(
            {"object": "list", "bucket_seconds": BUCKETS[bucket], "data": [_usage_row(r) for r in reply.rows]}
        )

    @router.get("/budgets", summary="Each budget in force (tenant and keys) and what is left of it over time")
    async def budgets(request: Request, tenant: str | None = None) -> Response:
        principal = principal_of(gateway, request)
        scoped = scoped_tenant(principal, tenant)
        data = await budgets_in_force(gateway, principal, scoped)
        return _json({"object": "list", "tenant": scoped, "data": data})

    @router.get("/decisions/{decision_id}/feedback", summary="Feedback given for a decision")
    async def decision_feedback(request: Request, decision_id: str, tenant: str | None = None) -> Response:
        principal = principal_of(gateway, request)
        scoped = scoped_tenant(principal, tenant)
        query = observer_pb2.ListFeedbackRequest(decision_id=decision_id, tenant=scoped)
        reply = await control_of(gateway).list_feedback(query)
        return _json({"object": "list", "data": [_dict(record) for record in reply.feedback]})


def _suite_routes(router: APIRouter, gateway: Gateway) -> None:
    """The router's policy state and the suite's health: operator only (they cover every tenant)."""

    @router.get("/routing", summary="The router's policy snapshot: routes, learned arms, exclusions")
    async def routing(request: Request) -> Response:
        operator_of(gateway, request)
        snapshot = await control_of(gateway).policy_snapshot()
        return _json({"object": "routing", **_snapshot(snapshot)})

    @router.get("/health", summary="Readiness of the suite as the gateway sees it")
    async def health(request: Request) -> Response:
        operator_of(gateway, request)
        return _json({"object": "health", **(await _health(gateway))})


async def _health(gateway: Gateway) -> dict[str, Any]:
    """Every check at once, each bounded by the control timeout; a failing one is reported, not raised."""
    client = control_of(gateway)
    started = time.perf_counter()
    router_status, observer_status, store, adapters = await asyncio.gather(
        client.serving("router"),
        client.serving("observer"),
        _store(gateway),
        _adapters(gateway),
        return_exceptions=False,
    )
    directory = gateway.directory
    return {
        "gateway": {
            "status": "draining" if gateway.draining else ("ready" if gateway.ready else "not ready"),
            "websockets": len(gateway.websockets),
        },
        "adapters": adapters,
        "router": {"status": router_status},
        "observer": {"status": observer_status},
        "store": store,
        "directory": {
            "store": directory.store.name if directory else "config",
            "reachable": directory.healthy if directory else True,
            "version": directory.directory.version if directory else "",
        },
        "checked_in_ms": (time.perf_counter() - started) * 1000,
    }


async def _adapters(gateway: Gateway) -> dict[str, Any]:
    """The adapters' readiness and one replica's observation backlog (the replica that answered)."""
    client = gateway.adapters
    serving = client is not None and client.serving
    health: dict[str, Any] = {"status": "SERVING" if serving else "NOT_SERVING"}
    if client is None or not serving:
        return health
    try:
        status = await client.status()
    except AtpError as exc:
        return {**health, "error": exc.message}
    return {
        **health,
        "replica_id": status.replica_id,
        "queued_observations": status.queued_observations,
        "spool_bytes": status.spool_bytes,
    }


async def _store(gateway: Gateway) -> dict[str, Any]:
    try:
        status = await control_of(gateway).store_status()
    except AtpError as exc:
        return {"backend": "unknown", "reachable": False, "error": f"observer: {exc.message}"}
    return {
        "backend": status.backend,
        "reachable": status.reachable,
        "error": status.error,
        "ingest_pending": status.ingest_pending,
    }
