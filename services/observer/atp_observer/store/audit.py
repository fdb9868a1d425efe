"""The admin audit log's storage, shared by both backends: checks, conditions and rows of `audit_log`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer.store.base import check_limit

DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 500
# One entry's before/after: a key or a tenant's settings is far smaller; the bound keeps a page bounded.
MAX_STATE_BYTES = 16_384
_MAX_TEXT = 256

AUDIT_COLUMNS = "seq, audit_id, at, actor_key_id, actor_role, actor_tenant, action, tenant, target, before_json, after_json"
# The columns an insert writes, in order (seq is assigned by the table).
INSERT_COLUMNS = AUDIT_COLUMNS.removeprefix("seq, ")


def check_entry(entry: observer_pb2.AuditEntry) -> None:
    """Refuse an entry without an id or action, with over-long fields, or whose states are not JSON objects."""
    if not entry.audit_id:
        raise InvalidArgument("audit_id is required", param="entry.audit_id")
    if not entry.action:
        raise InvalidArgument("action is required", param="entry.action")
    for name in ("audit_id", "actor_key_id", "actor_role", "actor_tenant", "action", "tenant", "target"):
        if len(getattr(entry, name)) > _MAX_TEXT:
            raise InvalidArgument(f"{name} is longer than {_MAX_TEXT} characters", param=f"entry.{name}")
    for name in ("before_json", "after_json"):
        text = getattr(entry, name)
        if not text:
            continue
        if len(text.encode()) > MAX_STATE_BYTES:
            raise InvalidArgument(f"{name} is larger than {MAX_STATE_BYTES} bytes", param=f"entry.{name}")
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"{name} is not JSON: {exc}", param=f"entry.{name}") from exc
        if not isinstance(parsed, dict):
            raise InvalidArgument(f"{name} must be a JSON object", param=f"entry.{name}")


def insert_values(entry: observer_pb2.AuditEntry, at: int) -> tuple[Any, ...]:
    """The INSERT_COLUMNS values of `entry`, stamped `at` (in the backend's timestamp integer)."""
    return (
        entry.audit_id,
        at,
        entry.actor_key_id,
        entry.actor_role,
        entry.actor_tenant,
        entry.action,
        entry.tenant,
        entry.target,
        entry.before_json or None,
        entry.after_json or None,
    )


def audit_conditions(
    tenant: str,
    start: datetime | None,
    end: datetime | None,
    before_seq: int,
    param: Callable[[Any], str],
    to_micros: Callable[[datetime], int],
) -> list[str]:
    """SQL conditions of a ListAudit; `param` binds a value and returns its placeholder."""
    where = []
    if tenant:
        where.append(f"tenant = {param(tenant)}")
    if start is not None:
        where.append(f"at >= {param(to_micros(start))}")
    if end is not None:
        where.append(f"at < {param(to_micros(end))}")
    if before_seq:
        where.append(f"seq < {param(before_seq)}")
    return where


def list_query(
    tenant: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    before_seq: int,
    placeholder: Callable[[int], str],
    to_micros: Callable[[datetime], int],
) -> tuple[str, list[Any]]:
    """A ListAudit's SQL and parameters; `placeholder(n)` is the backend's n-th (1-based) parameter.

    Newest first: seq increases with every entry, so it is both the order and the page key (the primary
    key, or audit_log_tenant_seq for one tenant)."""
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    where = audit_conditions(tenant, start, end, before_seq, bind, to_micros)
    sql = f"SELECT {AUDIT_COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY seq DESC LIMIT {bind(check_limit(limit, MAX_AUDIT_LIMIT))}", params


def insert_sql(placeholders: Sequence[str]) -> str:
    """The idempotent insert: a repeated audit_id inserts nothing and returns no row."""
    values = ", ".join(placeholders)
    return (
        f"INSERT INTO audit_log ({INSERT_COLUMNS}) VALUES ({values}) "
        "ON CONFLICT (audit_id) DO NOTHING RETURNING seq"
    )


def entry_from_row(row: Sequence[Any], at_micros: int) -> observer_pb2.AuditEntry:
    """An AuditEntry from an AUDIT_COLUMNS row (`at` given in Unix microseconds)."""
    entry = observer_pb2.AuditEntry(
        seq=row[0],
        audit_id=row[1],
        actor_key_id=row[3],
        actor_role=row[4],
        actor_tenant=row[5],
        action=row[6],
        tenant=row[7],
        target=row[8],
        before_json=row[9] or "",
        after_json=row[10] or "",
    )
    entry.at.FromMicroseconds(at_micros)
    return entry
