"""An audit entry as JSON: one shape for the admin API's body and the router's log line."""

from __future__ import annotations

from typing import Any

import orjson

from atp.observer.v1 import observer_pb2


def audit_entry_json(entry: observer_pb2.AuditEntry) -> dict[str, Any]:
    """The entry with its before and after states parsed (None where the change had none)."""
    return {
        "object": "audit_entry",
        "id": entry.audit_id,
        "seq": entry.seq,
        "at": entry.at.ToJsonString(),
        "actor": {"key_id": entry.actor_key_id, "role": entry.actor_role, "tenant": entry.actor_tenant},
        "action": entry.action,
        "tenant": entry.tenant,
        "target": entry.target,
        "before": orjson.loads(entry.before_json) if entry.before_json else None,
        "after": orjson.loads(entry.after_json) if entry.after_json else None,
    }
