"""Scoped administration over real HTTP against the whole suite: a tenant_admin administers its own tenant
and nothing else, on every admin route the app declares; every change lands in the audit log."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support.console_stack import (
    ACME_ADMIN_KEY,
    ACME_KEY,
    ADMIN_KEY,
    GLOBEX_ADMIN_KEY,
    GLOBEX_KEY,
    Suite,
    running_suite,
)
from tests.support.stack import until

pytestmark = pytest.mark.slow

ADMIN_PREFIX = "/v1/admin"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with running_suite(tmp_path_factory.mktemp("suite")) as running:
        yield running


def call(
    suite: Suite, method: str, path: str, key: str, *, json: Any = None, params: Any = None
) -> httpx.Response:
    return httpx.request(
        method,
        f"{suite.url}{path}",
        json=json,
        params=params,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    return reply.json()


def config_key_id(key: str) -> str:
    return "cfg_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def admin_routes(routes: list[Any]) -> set[tuple[str, str]]:
    """Every (method, path) under /v1/admin the app serves, through included routers at any depth."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        nested = getattr(route, "original_router", None)  # FastAPI's included routers
        if nested is not None:
            found |= admin_routes(list(nested.routes))
            continue
        path = getattr(route, "path", "")
        if path.startswith(ADMIN_PREFIX):
            found |= {(method, path) for method in getattr(route, "methods", None) or () if method != "HEAD"}
    return found


def audit_since(suite: Suite, seq: int, key: str = ADMIN_KEY, **params: Any) -> list[dict[str, Any]]:
    """Every audit entry after `seq` visible to `key`, oldest first, read two at a time (the paging)."""
    entries: list[dict[str, Any]] = []
    before = 0
    while True:
        query = {"limit": 2, **params, **({"before": before} if before else {})}
        page = ok(call(suite, "GET", f"{ADMIN_PREFIX}/audit", key, params=query))
        entries += [e for e in page["data"] if e["seq"] > seq]
        if page["next_before"] is None or page["data"][-1]["seq"] <= seq:
            return entries[::-1]
        before = page["next_before"]


def last_seq(suite: Suite) -> int:
    data = ok(call(suite, "GET", f"{ADMIN_PREFIX}/audit", ADMIN_KEY, params={"limit": 1}))["data"]
    return data[0]["seq"] if data else 0


def globex_decision(suite: Suite) -> str:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    reply = call(suite, "POST", "/v1/chat/completions", GLOBEX_KEY, json=body)
    assert reply.status_code == 200, reply.text
    decision_id = reply.headers["x-atp-decision-id"]
    # Wait until the observer has it, so a refusal below is the scope's and not an unknown id's.
    path = f"{ADMIN_PREFIX}/decisions/{decision_id}"
    asyncio.run(until(lambda: call(suite, "GET", path, ADMIN_KEY).status_code == 200, 10, "the decision"))
    return decision_id


def test_a_tenant_admin_of_acme_is_refused_on_every_admin_route_for_globex(suite: Suite) -> None:
    globex_key = ok(
        call(suite, "POST", f"{ADMIN_PREFIX}/keys", ADMIN_KEY, json={"tenant": "globex", "name": "target"}),
        201,
    )
    key_id, decision_id = globex_key["id"], globex_decision(suite)
    seq = last_seq(suite)
    other = {"tenant": "globex"}
    # Each route the app serves, aimed at globex. A route missing here fails the test below: a new
    # endpoint must say how it is scoped before it can ship.
    for_globex: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/admin/keys"): {"json": {"tenant": "globex", "role": "user"}},
        ("GET", "/v1/admin/keys"): {"params": other},
        ("POST", "/v1/admin/keys/{key_id}/rotate"): {},
        ("PATCH", "/v1/admin/keys/{key_id}"): {"json": {"limits": {"requests_per_minute": 1}}},
        ("DELETE", "/v1/admin/keys/{key_id}"): {},
        ("GET", "/v1/admin/tenants/{tenant}"): {},
        ("PATCH", "/v1/admin/tenants/{tenant}"): {"json": {"daily_budget_usd": 0.01}},
        ("GET", "/v1/admin/usage"): {"params": other},
        ("GET", "/v1/admin/usage/series"): {"params": other},
        ("GET", "/v1/admin/budgets"): {"params": other},
        ("GET", "/v1/admin/observations"): {"params": other},
        ("GET", "/v1/admin/decisions/{decision_id}"): {},
        ("GET", "/v1/admin/decisions/{decision_id}/feedback"): {"params": other},
        ("GET", "/v1/admin/audit"): {"params": other},
        # Every tenant's state at once: an operator's only.
        ("GET", "/v1/admin/routing"): {},
        ("GET", "/v1/admin/health"): {},
    }
    # Routes that name no tenant answer about the caller's own (checked below).
    own_only: dict[tuple[str, str], Callable[[Any], bool]] = {
        ("GET", "/v1/admin/whoami"): lambda body: body["tenant"] == "acme" and body["role"] == "tenant_admin",
        ("GET", "/v1/admin/tenants"): lambda body: body["data"] == ["acme"],
    }
    served = admin_routes(suite.app.routes)
    assert served == set(for_globex) | set(own_only), "declare how each admin route is scoped"
    values = {"key_id": key_id, "tenant": "globex", "decision_id": decision_id}
    for key in (ACME_ADMIN_KEY, ACME_KEY):  # acme's tenant_admin, and its user key alike
        for method, path in sorted(for_globex):
            reply = call(suite, method, path.format(**values), key, **for_globex[method, path])
            assert reply.status_code == 403, (key, method, path, reply.status_code, reply.text)
            assert reply.json()["error"]["type"] == "permission_error", (method, path)
    # The same reads are answered for the operator: each request above names a real resource of globex.
    for method, path in sorted(for_globex):
        if method == "GET":
            reply = call(suite, method, path.format(**values), ADMIN_KEY, **for_globex[method, path])
            assert reply.status_code == 200, (method, path, reply.text)
    for (method, path), check in own_only.items():
        assert check(ok(call(suite, method, path, ACME_ADMIN_KEY))), (method, path)
    # The same for a key of the operator's own tenant: acme's admin cannot touch an operator key either.
    for method, path in (("POST", "/rotate"), ("DELETE", ""), ("PATCH", "")):
        body = {"limits": {"requests_per_minute": 1}} if method == "PATCH" else None
        reply = call(
            suite, method, f"{ADMIN_PREFIX}/keys/{config_key_id(ADMIN_KEY)}{path}", ACME_ADMIN_KEY, json=body
        )
        assert reply.status_code == 403, reply.text
    # Nothing happened: globex's key is as created, its tenant unchanged, and the log holds no entry.
    keys = ok(
        call(suite, "GET", f"{ADMIN_PREFIX}/keys", ADMIN_KEY, params={**other, "include_revoked": True})
    )
    (target,) = [k for k in keys["data"] if k["id"] == key_id]
    assert target.get("revoked_at") is None and target["limits"]["requests_per_minute"] is None
    assert not [k for k in keys["data"] if k.get("rotated_from") == key_id]
    assert ok(call(suite, "GET", f"{ADMIN_PREFIX}/tenants/globex", ADMIN_KEY))["overridden"] == []
    assert audit_since(suite, seq) == []


def test_a_tenant_admin_administers_its_own_tenant_without_escalating(suite: Suite) -> None:
    keys = f"{ADMIN_PREFIX}/keys"
    created = ok(call(suite, "POST", keys, ACME_ADMIN_KEY, json={"tenant": "acme", "name": "batch"}), 201)
    assert created["tenant"] == "acme" and created["role"] == "user" and created["key"].startswith("sk-atp-")
    deputy = ok(
        call(suite, "POST", keys, ACME_ADMIN_KEY, json={"tenant": "acme", "role": "tenant_admin"}), 201
    )
    assert ok(call(suite, "GET", f"{ADMIN_PREFIX}/whoami", deputy["key"]))["role"] == "tenant_admin"
    for role in ("operator", "admin"):  # `admin` is operator's old name: refused alike
        reply = call(suite, "POST", keys, ACME_ADMIN_KEY, json={"tenant": "acme", "role": role})
        assert reply.status_code == 403 and reply.json()["error"]["param"] == "role", reply.text
    listed = ok(call(suite, "GET", keys, ACME_ADMIN_KEY))["data"]
    assert {k["tenant"] for k in listed} == {"acme"} and created["id"] in {k["id"] for k in listed}
    path = f"{keys}/{created['id']}"
    assert (
        ok(call(suite, "PATCH", path, ACME_ADMIN_KEY, json={"limits": {"requests_per_minute": 5}}))["limits"][
            "requests_per_minute"
        ]
        == 5
    )
    rotated = ok(call(suite, "POST", f"{path}/rotate", ACME_ADMIN_KEY))
    assert rotated["revoked"]["id"] == created["id"] and rotated["limits"]["requests_per_minute"] == 5
    ok(call(suite, "DELETE", f"{keys}/{rotated['id']}", ACME_ADMIN_KEY))
    # A user key of the tenant administers nothing.
    for method, target in (("GET", keys), ("POST", keys), ("DELETE", f"{keys}/{deputy['id']}")):
        json = {"tenant": "acme"} if method == "POST" else None
        assert call(suite, method, target, ACME_KEY, json=json).status_code == 403, (method, target)
    # The tenant's settings may be tightened, never loosened: the operator's values are its ceiling.
    tenant = f"{ADMIN_PREFIX}/tenants/acme"
    assert (
        ok(call(suite, "PATCH", tenant, ACME_ADMIN_KEY, json={"daily_budget_usd": 1.5}))["daily_budget_usd"]
        == 1.5
    )
    for body in (
        {"daily_budget_usd": 3},
        {"monthly_budget_usd": 31},
        {"reset": ["daily_budget_usd"]},
    ):
        reply = call(suite, "PATCH", tenant, ACME_ADMIN_KEY, json=body)
        assert reply.status_code == 403, (body, reply.text)
    assert (
        ok(call(suite, "PATCH", tenant, ACME_ADMIN_KEY, json={"requests_per_minute": 100}))[
            "requests_per_minute"
        ]
        == 100
    )
    assert call(suite, "PATCH", tenant, ACME_ADMIN_KEY, json={"requests_per_minute": 0}).status_code == 403
    # The operator loosens them again.
    reset = {"reset": ["daily_budget_usd", "requests_per_minute"]}
    assert ok(call(suite, "PATCH", tenant, ADMIN_KEY, json=reset))["daily_budget_usd"] == 2
    assert (
        call(suite, "GET", f"{ADMIN_PREFIX}/usage", ACME_ADMIN_KEY, params={"tenant": "*"}).status_code == 403
    )


def test_the_audit_log_shows_every_change_and_each_admin_sees_its_scope(suite: Suite) -> None:
    seq = last_seq(suite)
    keys = f"{ADMIN_PREFIX}/keys"
    made: list[tuple[str, str, str]] = []  # (action, tenant, target) in order
    acme = ok(call(suite, "POST", keys, ACME_ADMIN_KEY, json={"tenant": "acme", "name": "audited"}), 201)
    made.append(("key.create", "acme", acme["id"]))
    ok(
        call(
            suite,
            "PATCH",
            f"{keys}/{acme['id']}",
            ACME_ADMIN_KEY,
            json={"limits": {"tokens_per_minute": 900}},
        )
    )
    made.append(("key.update", "acme", acme["id"]))
    rotated = ok(call(suite, "POST", f"{keys}/{acme['id']}/rotate", ACME_ADMIN_KEY))
    made.append(("key.rotate", "acme", acme["id"]))
    ok(call(suite, "DELETE", f"{keys}/{rotated['id']}", ACME_ADMIN_KEY))
    made.append(("key.revoke", "acme", rotated["id"]))
    ok(call(suite, "PATCH", f"{ADMIN_PREFIX}/tenants/acme", ACME_ADMIN_KEY, json={"monthly_budget_usd": 20}))
    made.append(("tenant.set", "acme", "acme"))
    globex = ok(call(suite, "POST", keys, ADMIN_KEY, json={"tenant": "globex", "role": "tenant_admin"}), 201)
    made.append(("key.create", "globex", globex["id"]))
    ok(
        call(
            suite,
            "PATCH",
            f"{ADMIN_PREFIX}/tenants/globex",
            ADMIN_KEY,
            json={"allowed_models": ["local-small"]},
        )
    )
    made.append(("tenant.set", "globex", "globex"))
    ok(
        call(
            suite, "PATCH", f"{ADMIN_PREFIX}/tenants/acme", ADMIN_KEY, json={"reset": ["monthly_budget_usd"]}
        )
    )
    made.append(("tenant.set", "acme", "acme"))
    # Refused attempts change nothing and leave no entry.
    assert call(suite, "POST", keys, ACME_ADMIN_KEY, json={"tenant": "globex"}).status_code == 403

    everything = audit_since(suite, seq)
    assert [(e["action"], e["tenant"], e["target"]) for e in everything] == made
    by_action = {(e["action"], e["target"]): e for e in everything}
    create = by_action["key.create", acme["id"]]
    assert create["actor"] == {
        "key_id": config_key_id(ACME_ADMIN_KEY),
        "role": "tenant_admin",
        "tenant": "acme",
    }
    assert (
        create["before"] is None
        and create["after"]["name"] == "audited"
        and create["after"]["role"] == "user"
    )
    update = by_action["key.update", acme["id"]]
    assert update["before"]["limits"] == {} and update["after"]["limits"] == {"tokens_per_minute": 900}
    rotate = by_action["key.rotate", acme["id"]]
    assert rotate["after"]["revoked_at"] and rotate["after"]["replaced_by"]["key_id"] == rotated["id"]
    assert by_action["key.revoke", rotated["id"]]["before"]["revoked_at"] is None
    operator_set = everything[-1]
    assert operator_set["actor"]["role"] == "operator" and operator_set["before"]["overrides"] == {
        "monthly_budget_usd": 20
    }
    assert operator_set["after"]["overrides"] == {}
    # Never a key or a digest, in any entry.
    raw = orjson.dumps(everything).decode()
    for secret in (acme["key"], rotated["key"], globex["key"], "sk-atp-", "digest"):
        assert secret not in raw
    for plaintext in (acme["key"], rotated["key"], globex["key"]):
        assert hashlib.sha256(plaintext.encode()).hexdigest() not in raw
    # Scopes: acme's admin sees acme's entries (the operator's changes to acme too), globex's admin only
    # globex's, a user key none at all.
    assert [e["target"] for e in audit_since(suite, seq, ACME_ADMIN_KEY)] == [
        t for _, tenant, t in made if tenant == "acme"
    ]
    assert [e["target"] for e in audit_since(suite, seq, GLOBEX_ADMIN_KEY)] == [
        t for _, tenant, t in made if tenant == "globex"
    ]
    assert [e["target"] for e in audit_since(suite, seq, ADMIN_KEY, tenant="globex")] == [
        globex["id"],
        "globex",
    ]
    assert call(suite, "GET", f"{ADMIN_PREFIX}/audit", ACME_KEY).status_code == 403
    # Time filters and bounds.
    first_at = everything[0]["at"]
    assert audit_since(suite, seq, ADMIN_KEY, start=first_at)[0]["target"] == acme["id"]
    assert audit_since(suite, seq, ADMIN_KEY, end=first_at) == []
    for params, param in (({"limit": 501}, "limit"), ({"limit": 0}, "limit"), ({"start": "today"}, "start")):
        reply = call(suite, "GET", f"{ADMIN_PREFIX}/audit", ADMIN_KEY, params=params)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param, reply.text
