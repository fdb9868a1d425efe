"""The admin audit trail: every change's entry is stored by the observer before the change is written."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from grpc import aio

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.audit_json import audit_entry_json
from atp_common.errors import Unavailable
from atp_common.limits.directory import KeyRecord
from atp_router.admin_scope import Caller

__all__ = ["AuditLog", "key_state"]

log = logging.getLogger("atp.audit")


def key_state(record: KeyRecord, limits: Mapping[str, float | None]) -> dict[str, Any]:
    """A key's audited state: every field of its record but the digest (and never the key), with the
    limits in force. Every field, so one a later change adds to keys is audited without a change here."""
    state: dict[str, Any] = {name: getattr(record, name) for name in record.__slots__ if name != "digest"}
    state["limits"] = dict(limits)
    return {name: dict(value) if isinstance(value, Mapping) else value for name, value in state.items()}


def _json(state: Mapping[str, Any] | None) -> str:
    return orjson.dumps(state).decode() if state is not None else ""


class AuditLog:
    """Writes entries to the observer (RecordAudit, one deadline-bounded call).

    An entry is recorded before its change: when the observer cannot take it, the change is refused
    (Unavailable) rather than made unaudited. Without an observer configured at all (a standalone router),
    entries go to the `atp.audit` log at INFO instead, which start-up announces once.
    """

    def __init__(self, observer: observer_pb2_grpc.ObserverServiceStub | None, *, timeout_s: float):
        self._observer = observer
        self._timeout_s = timeout_s
        if observer is None:
            log.warning("no observer configured: admin audit entries are written to this log only")

    async def _record(self, entry: observer_pb2.AuditEntry) -> None:
        if self._observer is None:
            log.info("audit %s", orjson.dumps(audit_entry_json(entry)).decode())
            return
        try:
            await self._observer.RecordAudit(
                observer_pb2.RecordAuditRequest(entry=entry), timeout=self._timeout_s
            )
        except aio.AioRpcError as exc:
            raise Unavailable(
                f"The audit log cannot record this change now ({exc.code().name}), so it was not made; retry."
            ) from exc

    async def change(
        self,
        caller: Caller,
        action: str,
        target: tuple[str, str],
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        write: Callable[[], Awaitable[None]],
    ) -> None:
        """Record `action` on `target` (tenant, key id or tenant name), then `write` the change. A failed
        write leaves a `<action>.failed` entry (best effort: the change did not happen either way)."""
        tenant, name = target
        entry = observer_pb2.AuditEntry(
            audit_id="aud_" + secrets.token_hex(12),
            actor_key_id=caller.key_id,
            actor_role=caller.role,
            actor_tenant=caller.tenant,
            action=action,
            tenant=tenant,
            target=name,
            before_json=_json(before),
            after_json=_json(after),
        )
        entry.at.FromNanoseconds(time.time_ns())
        await self._record(entry)
        try:
            await write()
        except Exception:
            failed = observer_pb2.AuditEntry()
            failed.CopyFrom(entry)
            failed.audit_id, failed.action, failed.after_json = (
                entry.audit_id + "_failed",
                action + ".failed",
                "",
            )
            failed.at.FromNanoseconds(time.time_ns())
            try:
                await self._record(failed)
            except Unavailable:
                log.warning("could not record %s on %s/%s as failed", action, tenant, name)
            raise
