"""The console's files and the admin endpoints it reads, over real HTTP against the whole suite: what each
role may see, refusals naming their parameter, and answers that follow the traffic."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atp_gateway.console import STATIC_DIR
from tests.support.console_stack import (
    ACME_KEY,
    ADMIN_KEY,
    GLOBEX_KEY,
    LEGACY_ADMIN_KEY,
    Suite,
    running_suite,
)
from tests.support.stack import until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with running_suite(tmp_path_factory.mktemp("suite")) as running:
        yield running


def get(suite: Suite, path: str, key: str = ADMIN_KEY, **params: str) -> httpx.Response:
    return httpx.get(
        f"{suite.url}{path}", params=params, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def chat(suite: Suite, key: str) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 16}
    reply = httpx.post(
        f"{suite.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    return reply


def refused(reply: httpx.Response, status: int, param: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    if param is not None:
        assert reply.json()["error"]["param"] == param


def test_the_console_is_served_from_the_package_with_no_outside_resource(suite: Suite) -> None:
    root = httpx.get(f"{suite.url}/console", follow_redirects=False)
    assert root.status_code == 308 and root.headers["location"] == "/console/"
    page = httpx.get(f"{suite.url}/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(f"{suite.url}/console/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "console.css", "app.js", "chart.js", "spend.js"}
    for path in files:
        # Offline: nothing is fetched from another origin (the SVG namespace is a name, not a fetch).
        urls = set(re.findall(r"https?://[^\s\"'`)]+", path.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
    assert httpx.get(f"{suite.url}/console/nothing.js").status_code == 404


def test_whoami_names_the_key_and_refuses_a_wrong_one(suite: Suite) -> None:
    me = get(suite, "/v1/admin/whoami", ACME_KEY).json()
    assert me == {
        "object": "principal",
        "tenant": "acme",
        "role": "user",
        "key_name": "acme-app",
        "key_id": me["key_id"],
    }
    assert get(suite, "/v1/admin/whoami").json()["role"] == "operator"
    # The deprecated `admin` of a configuration key keeps working, as operator.
    assert get(suite, "/v1/admin/whoami", LEGACY_ADMIN_KEY).json()["role"] == "operator"
    refused(get(suite, "/v1/admin/whoami", "sk-nobody-at-all"), 401)
    refused(httpx.get(f"{suite.url}/v1/admin/whoami"), 401)


def test_a_tenant_key_reads_only_its_own_tenant(suite: Suite) -> None:
    assert get(suite, "/v1/admin/tenants", ACME_KEY).json()["data"] == ["acme"]
    assert get(suite, "/v1/admin/tenants").json()["data"] == ["acme", "globex", "ops"]
    for path, params in (
        ("/v1/admin/usage/series", {"tenant": "globex"}),
        ("/v1/admin/usage/series", {"tenant": "*"}),
        ("/v1/admin/budgets", {"tenant": "globex"}),
        ("/v1/admin/decisions/any/feedback", {"tenant": "globex"}),
        ("/v1/admin/observations", {"tenant": "globex"}),
    ):
        refused(get(suite, path, ACME_KEY, **params), 403, "tenant")
    for path in ("/v1/admin/routing", "/v1/admin/health", "/v1/admin/keys"):
        refused(get(suite, path, ACME_KEY), 403)


def test_bad_parameters_are_400s_naming_them(suite: Suite) -> None:
    refused(get(suite, "/v1/admin/usage/series", bucket="minute"), 400, "bucket")
    refused(get(suite, "/v1/admin/usage/series", start="yesterday"), 400, "start")
    refused(get(suite, "/v1/admin/usage/series", group_by="colour"), 400, "group_by")
    refused(
        get(suite, "/v1/admin/usage/series", bucket="hour", start="2000-01-01T00:00:00Z"),
        400,
        "bucket_seconds",
    )
    refused(get(suite, "/v1/admin/observations", tenant="acme", status="lost"), 400, "status")
    refused(get(suite, "/v1/admin/observations", tenant="acme", after="soon"), 400, "after")


def test_the_pages_data_follow_the_traffic(suite: Suite) -> None:
    replies = [chat(suite, ACME_KEY) for _ in range(4)]
    chat(suite, GLOBEX_KEY)
    last = replies[-1].headers["x-atp-decision-id"]
    feedback = httpx.post(
        f"{suite.url}/v1/feedback",
        json={"decision_id": last, "score": 0.9, "label": "good"},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert feedback.status_code == 200, feedback.text

    def stored() -> list[dict]:
        data = get(suite, "/v1/admin/observations", ACME_KEY, limit="50").json()["data"]
        return data if last in {o["decision"]["decision_id"] for o in data} else []

    observations = until_sync(stored, "the observations stored")
    served = {o["model"] for o in observations}
    for model in served:
        only = get(suite, "/v1/admin/observations", ACME_KEY, model=model, status="ok").json()["data"]
        assert only and {o["model"] for o in only} == {model}
    assert get(suite, "/v1/admin/observations", ACME_KEY, status="error").json()["data"] == []

    series = get(suite, "/v1/admin/usage/series", ACME_KEY, bucket="hour").json()
    assert series["bucket_seconds"] == 3600
    assert sum(r["requests"] for r in series["data"]) >= 4
    assert all(r["bucket_start"].endswith(":00:00Z") for r in series["data"])
    every = get(suite, "/v1/admin/usage/series", tenant="*", group_by="tenant", bucket="day").json()["data"]
    assert {"acme", "globex"} <= {r["tenant"] for r in every}

    budgets = get(suite, "/v1/admin/budgets", ACME_KEY).json()
    assert [b["period"] for b in budgets["data"]] == ["daily", "monthly"]
    daily = budgets["data"][0]
    assert daily["budget_usd"] == 2 and daily["spent_usd"] > 0
    assert daily["remaining_usd"] == pytest.approx(daily["points"][-1]["remaining_usd"])
    assert get(suite, "/v1/admin/budgets", tenant="globex").json()["data"] == []

    given = until_sync(
        lambda: get(suite, f"/v1/admin/decisions/{last}/feedback", ACME_KEY).json()["data"], "the feedback"
    )
    assert given[0]["score"] == 0.9 and given[0]["label"] == "good"
    assert get(suite, f"/v1/admin/decisions/{last}/feedback", tenant="globex").json()["data"] == []


def test_routing_and_health_as_the_gateway_sees_them(suite: Suite) -> None:
    chat(suite, ACME_KEY)

    # Thompson sampling may send every request so far to either candidate: wait for any arm's pulls.
    def learned() -> dict | None:
        routing = get(suite, "/v1/admin/routing").json()
        return routing if any(a["pulls"] > 0 for a in routing["routes"][0]["arms"]) else None

    routing = until_sync(learned, "arms learned from the traffic")
    assert routing["version"] > 0 and routing["default_route"] == "auto" and routing["age_s"] >= 0
    (auto,) = routing["routes"]
    assert auto["policy"] == "thompson" and auto["candidates"] == ["local-small", "local-large"]
    arm = next(a for a in auto["arms"] if a["pulls"] > 0)
    assert 0 <= arm["mean_reward"] <= 1 and arm["uncertainty"] is not None
    assert routing["exclusions"] == []

    # The adapters' backlog drains once the observations of the traffic (this test's and the module's
    # earlier tests') reach the store; a loaded host may show one still on its way.
    health = until_sync(
        lambda: (
            (h := get(suite, "/v1/admin/health").json())["adapters"].get("queued_observations") == 0
            and h["store"].get("ingest_pending") == 0
            and h
        ),
        "the observation backlog drained",
    )
    assert health["gateway"]["status"] == "ready"
    assert [health[s]["status"] for s in ("adapters", "router", "observer")] == ["SERVING"] * 3
    # The adapters' backlog: everything delivered once the traffic's observations reached the store.
    assert health["adapters"]["replica_id"] and health["adapters"]["spool_bytes"] == 0
    assert health["adapters"]["queued_observations"] == 0
    assert health["store"] == {"backend": "sqlite", "reachable": True, "error": "", "ingest_pending": 0}
    assert health["directory"]["store"] == "file" and health["directory"]["reachable"] is True


def until_sync(predicate, what: str, timeout_s: float = 10.0):
    """`until` for these synchronous tests: the suite runs on its own loop in another thread."""
    import asyncio

    return asyncio.run(until(predicate, timeout_s, what))


def test_package_data_lists_the_console_files() -> None:
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert 'atp_gateway = ["console/static/*", "console/static/**/*"]' in pyproject


async def test_health_reports_services_that_are_down_instead_of_failing(tmp_path: Path) -> None:
    from atp_common.config import AtpConfig
    from atp_gateway.app import create_app
    from atp_gateway.serve import GatewayServer
    from atp_gateway.settings import GatewaySettings
    from tests.support.console_stack import CONFIG
    from tests.support.stack import unused_address

    nowhere = unused_address()
    settings = GatewaySettings(
        port=0,
        metrics_port=None,
        adapters_addr=nowhere,
        router_addr=nowhere,
        observer_addr=nowhere,
        directory_path=str(tmp_path / "tenants.json"),
        control_timeout_s=0.5,
        drain_delay_s=0,
        grace_s=1,
    )
    server = GatewayServer(settings, create_app(settings, config=AtpConfig.model_validate(CONFIG)))
    await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ) as http:
            reply = await http.get("/v1/admin/health", timeout=10)
            routing = await http.get("/v1/admin/routing", timeout=10)
    finally:
        await server.stop_now()
    assert reply.status_code == 200, reply.text
    health = reply.json()
    assert health["gateway"]["status"] == "not ready" and health["adapters"]["status"] == "NOT_SERVING"
    for service in ("router", "observer"):
        assert health[service]["status"].startswith("unreachable ("), health[service]
    assert health["store"]["reachable"] is False and health["store"]["error"].startswith("observer: ")
    assert health["checked_in_ms"] < 5000
    # The routing page's data cannot be had without the router: a clear 503, not a 500.
    assert routing.status_code == 503, routing.text


def test_a_keys_own_budget_burns_down_beside_the_tenants(suite: Suite) -> None:
    created = httpx.post(
        f"{suite.url}/v1/admin/keys",
        json={"tenant": "globex", "name": "capped", "limits": {"daily_budget_usd": 1.5}},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    # Both followers of the directory must know the new key before it spends: the gateway to accept it,
    # the adapters to charge its own budget.
    follower = suite.adapters.parts.admission.follower  # its directory is replaced on every change
    until_sync(
        lambda: key_id in follower.directory.key_limits and get(suite, "/v1/models", key).status_code == 200,
        "the new key known to the gateway and the adapters",
    )
    for _ in range(3):
        chat(suite, key)

    def key_budget(as_key: str) -> list[dict]:
        data = get(suite, "/v1/admin/budgets", as_key, tenant="globex").json()["data"]
        return [b for b in data if b["scope"] == "key" and b["spent_usd"] > 0]

    def settled() -> tuple[dict, dict] | None:
        # The budget is charged when each request's lease settles and the usage when its observation
        # lands; both trail the replies, so wait for all three requests in both before comparing.
        budgets = key_budget(ADMIN_KEY)
        spent = get(suite, "/v1/admin/usage", tenant="globex", group_by="key").json()["data"]
        mine = [row for row in spent if row["key_id"] == key_id and int(row["requests"]) == 3]
        if len(budgets) != 1 or not mine or budgets[0]["spent_usd"] != pytest.approx(mine[0]["cost_usd"]):
            return None
        return budgets[0], mine[0]

    daily, mine = until_sync(settled, "the key's three requests in its budget and its usage")
    assert daily["key_id"] == key_id and daily["key_name"] == "capped" and daily["period"] == "daily"
    assert daily["budget_usd"] == 1.5 and daily["remaining_usd"] == pytest.approx(1.5 - daily["spent_usd"])
    assert mine["cost_usd"] > 0
    # The key itself sees its own budget; another user key of the tenant sees no key's budget.
    assert [b["key_id"] for b in key_budget(key)] == [key_id]
    assert [
        b for b in get(suite, "/v1/admin/budgets", GLOBEX_KEY).json()["data"] if b["scope"] == "key"
    ] == []
