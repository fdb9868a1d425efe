"""Who may change what through AdminService: a tenant_admin within its own tenant, an operator anywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atp.router.v1 import admin_pb2
from atp_common.config import KEY_LIMIT_FIELDS, ROLES, TenantConfig, upgrade_role
from atp_common.errors import InvalidArgument, PermissionDenied
from atp_common.limits.directory import KeyRecord

__all__ = ["Caller", "check_tightens"]

# A caller without an actor: a client of the router's gRPC API inside the suite, trusted like an operator.
INTERNAL = "internal"
_BUDGETS = ("daily_budget_usd", "monthly_budget_usd")


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal behind an admin call, as the gateway authenticated it."""

    key_id: str
    role: str
    tenant: str

    @classmethod
    def of(cls, request: Any) -> Caller:
        """The request's actor; without one, an internal caller."""
        if not request.HasField("actor"):
            return cls("", INTERNAL, "")
        actor: admin_pb2.Actor = request.actor
        role = upgrade_role(actor.role, f"actor {actor.key_id}")
        if role not in ROLES:
            raise InvalidArgument(f"actor.role must be one of {', '.join(ROLES)}", param="actor.role")
        return cls(actor.key_id, role, actor.tenant)

    @property
    def everywhere(self) -> bool:
        """Whether the caller administers every tenant."""
        return self.role in ("operator", INTERNAL)

    def administers(self, tenant: str) -> None:
        """Refuse unless the caller may administer `tenant`."""
        if self.everywhere:
            return
        if self.role != "tenant_admin":
            raise PermissionDenied("This operation needs a tenant_admin or operator key.")
        if tenant != self.tenant:
            raise PermissionDenied("A tenant_admin administers only its own tenant.", param="tenant")

    def may_give(self, role: str) -> None:
        """Refuse a role above the caller's own (no escalation through a key it creates)."""
        if role == "operator" and not self.everywhere:
            raise PermissionDenied("Only an operator can create or change operator keys.", param="role")

    def administers_key(self, record: KeyRecord) -> None:
        """Refuse a key outside the caller's tenant, or above its role."""
        self.administers(record.tenant)
        self.may_give(record.role)

    def list_scope(self, tenant: str) -> str:
        """The tenant filter of a listing: a tenant_admin's own tenant whatever it asks (another: refused)."""
        if self.everywhere:
            return tenant
        self.administers(tenant or self.tenant)
        return self.tenant


_USER_BUDGETS = frozenset({"user_daily_budget_usd", "user_monthly_budget_usd"})


def _loosens(name: str, new: Any, current: Any) -> bool:
    if name in KEY_LIMIT_FIELDS:
        # None: no limit. Removing one, or raising it, loosens; any limit tightens an unlimited field.
        return current is not None and (new is None or new > current)
    if name in _BUDGETS:
        return current is not None and new > current
    if name in _USER_BUDGETS:
        # An end-user budget of 0 (or none) removes it, so only a lower positive value tightens.
        return current is not None and (not new or new > current)
    if name == "allowed_models":
        # Empty allows every model: a non-empty allow-list may only shrink.
        return bool(current) and (not new or not set(new) <= set(current))
    if name == "denied_models":
        return not set(current) <= set(new)
    return True  # a field not known here is the operator's


def check_tightens(
    caller: Caller, current: TenantConfig, changes: Mapping[str, Any], reset: Sequence[str]
) -> None:
    """A tenant_admin may only tighten its tenant's settings: the operator's values are its ceiling."""
    if caller.everywhere:
        return
    if reset:
        raise PermissionDenied("Only an operator can reset tenant settings.", param="reset")
    loosened = sorted(n for n, v in changes.items() if _loosens(n, v, getattr(current, n)))
    if loosened:
        raise PermissionDenied(
            f"A tenant_admin can only tighten its tenant's settings; ask an operator to loosen {loosened}.",
            param="settings",
        )
