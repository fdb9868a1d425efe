"""Budgets in force for the console: the tenant's, and each key's own, with their burn-down over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from atp.observer.v1 import observer_pb2
from atp.router.v1 import admin_pb2
from atp_gateway.admin import actor_of, control_of
from atp_gateway.auth import Principal
from atp_gateway.gateway import Gateway

__all__ = ["budgets_in_force", "usage_request"]

_HOUR, _DAY = 3600, 86_400
_MANAGERS = ("tenant_admin", "operator")


def usage_request(
    tenant: str, start: datetime, end: datetime | None, group_by: list[str], bucket_s: int
) -> observer_pb2.QueryUsageRequest:
    """A QueryUsage over [start, end) in buckets of bucket_s, grouped by `group_by`."""
    query = observer_pb2.QueryUsageRequest(tenant=tenant, group_by=group_by, bucket_seconds=bucket_s)
    query.start.FromDatetime(start)
    if end is not None:
        query.end.FromDatetime(end)
    return query


async def budgets_in_force(gateway: Gateway, principal: Principal, tenant: str) -> list[dict[str, Any]]:
    """Each daily and monthly budget of `tenant` and of its keys (all of them for a tenant_admin or an
    operator, the caller's own for a user key), with what is spent and left at each bucket's end."""
    client = control_of(gateway)
    settings = (await client.call(client.admin.GetTenant, admin_pb2.GetTenantRequest(tenant=tenant))).settings
    keys = await _keys_with_budgets(gateway, principal, tenant)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    periods = (
        ("daily", "daily_budget_usd", day, _HOUR),
        ("monthly", "monthly_budget_usd", day.replace(day=1), _DAY),
    )
    data: list[dict[str, Any]] = []
    for period, field, since, bucket_s in periods:
        if settings.HasField(field):
            usage = await client.query_usage(usage_request(tenant, since, None, [], bucket_s))
            data.append(
                {
                    "scope": "tenant",
                    **burn_down(period, getattr(settings, field), since, bucket_s, usage.rows),
                }
            )
        budgeted = [key for key in keys if key.limits.HasField(field)]
        if not budgeted:
            continue
        usage = await client.query_usage(usage_request(tenant, since, None, ["key"], bucket_s))
        for key in budgeted:
            rows = [row for row in usage.rows if row.key_id == key.key_id]
            limit = getattr(key.limits, field)
            entry = burn_down(period, limit, since, bucket_s, rows)
            data.append({"scope": "key", "key_id": key.key_id, "key_name": key.name, **entry})
    return data


async def _keys_with_budgets(
    gateway: Gateway, principal: Principal, tenant: str
) -> list[admin_pb2.ApiKeyInfo]:
    """The tenant's keys that carry a budget of their own: all for a manager, the caller's key otherwise."""
    client = control_of(gateway)
    asker = principal
    if principal.role not in _MANAGERS:
        # A user key sees its own key's budgets only; the listing is asked as the tenant's administrator
        # would see it and narrowed to that key.
        asker = Principal(tenant, "tenant_admin", principal.key_name, principal.key_id)
    reply = await client.call(
        client.admin.ListKeys, admin_pb2.ListKeysRequest(tenant=tenant, actor=actor_of(asker))
    )
    budgeted = [
        key
        for key in reply.keys
        if key.limits.HasField("daily_budget_usd") or key.limits.HasField("monthly_budget_usd")
    ]
    if principal.role in _MANAGERS:
        return budgeted
    return [key for key in budgeted if key.key_id == principal.key_id]


def burn_down(period: str, limit: float, since: datetime, bucket_s: int, rows: Any) -> dict[str, Any]:
    """A budget's remaining amount at the end of each bucket of spend since the period began (now, for
    the bucket in progress)."""
    now = datetime.now(UTC)
    remaining = limit
    points = [{"at": since.isoformat(), "remaining_usd": limit}]
    for row in rows:
        remaining -= row.cost_usd
        end = min(row.bucket_start.ToDatetime(tzinfo=UTC) + timedelta(seconds=bucket_s), now)
        points.append({"at": end.isoformat(), "remaining_usd": remaining})
    return {
        "period": period,
        "budget_usd": limit,
        "spent_usd": limit - remaining,
        "remaining_usd": remaining,
        "since": since.isoformat(),
        "points": points,
    }
