"""The console in a real headless Chromium against the whole suite: an operator signs in, creates a key,
sees its requests and their decisions, watches spend move and revokes it; a wrong key cannot sign in; a
tenant's key and a tenant_admin see only their tenant; every control is labelled, the keyboard reaches everything, and every
text on every page meets WCAG AA contrast. Each test saves screenshots in its output folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.console_stack import (
    ACME_ADMIN_KEY,
    ACME_KEY,
    ADMIN_KEY,
    GLOBEX_KEY,
    Suite,
    chromium,
    chromium_paths,
    running_suite,
)

pytestmark = pytest.mark.slow
PAGES = ("spend", "requests", "routing", "keys", "health")
WAIT_S = 20
# Set to a folder (docs/console) to keep one screenshot of each page (and of the sign-in) there for the README.
SCREENSHOTS = os.environ.get("ATP_CONSOLE_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    chromium_paths()  # skip (or fail in CI) before starting anything
    with running_suite(tmp_path_factory.mktemp("suite")) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def wait(driver: Any, predicate: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The live refresh replaces a page's data every 5 s: an element found just before may be gone.
    waiter = WebDriverWait(
        driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return waiter.until(lambda d: predicate(d), message=what)


def text_of(driver: Any, element_id: str) -> str:
    """The element's text, or "" when it is absent; read in the page itself, so a refresh replacing the
    element between finding and reading it cannot fail the read."""
    text = driver.execute_script(
        "const el = document.getElementById(arguments[0]); return el ? el.innerText : '';", element_id
    )
    return str(text)


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """The whole page (the window grown to its height), saved as `name`.png in `folder`."""
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 2600)")
    driver.set_window_size(1280, max(height + 160, 700))  # the window includes what is not the page
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1280, 1000)
    if SCREENSHOTS and name in (*PAGES, "sign-in"):
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / path.name)
    return path


def sign_in(driver: Any, suite: Suite, key: str) -> None:
    driver.get(f"{suite.url}/console")
    field = wait(driver, lambda d: d.find_element(by("ID"), "api-key"), "the sign-in form")
    field.send_keys(key)
    driver.find_element(by("CSS_SELECTOR"), "#sign-in-form button").click()


def signed_in(driver: Any) -> bool:
    return driver.find_element(by("ID"), "nav").is_displayed()


def go(driver: Any, page: str, ready_id: str) -> None:
    driver.find_element(by("CSS_SELECTOR"), f'#nav a[data-page="{page}"]').click()
    wait(
        driver,
        lambda d: (
            d.find_elements(by("ID"), ready_id)
            and d.find_element(by("ID"), "page").get_attribute("data-page") == page
        ),
        f"the {page} page",
    )


def click(driver: Any, css: str) -> None:
    """Click the element `css` names, finding it again if a redraw replaced it in between."""

    def clicked(d: Any) -> bool:
        d.find_element(by("CSS_SELECTOR"), css).click()
        return True

    wait(driver, clicked, f"clicking {css}")


def showing(page: str) -> Any:
    """A wait predicate: the console shows `page` with its heading."""
    return lambda d: (
        d.find_element(by("ID"), "page").get_attribute("data-page") == page
        and d.find_elements(by("CSS_SELECTOR"), "#page h1")
    )


def choose(driver: Any, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(by("ID"), select_id)).select_by_value(value)


def chat(suite: Suite, key: str, n: int = 1, user: str = "") -> list[httpx.Response]:
    body = {"model": "auto", "messages": [{"role": "user", "content": "how are you"}], "max_tokens": 16}
    headers = {"authorization": f"Bearer {key}"} | ({"x-atp-user": user} if user else {})
    return [
        httpx.post(f"{suite.url}/v1/chat/completions", json=body, headers=headers, timeout=10)
        for _ in range(n)
    ]


def test_an_operator_creates_a_key_sees_its_requests_and_spend_and_revokes_it(
    suite: Suite, browser: Any, tmp_path: Path
) -> None:
    sign_in(browser, suite, ADMIN_KEY)
    wait(browser, signed_in, "signed in")
    wait(browser, lambda d: "operator" in text_of(d, "who"), "the principal shown")

    go(browser, "keys", "key-list")
    browser.find_element(by("ID"), "key-tenant").clear()
    browser.find_element(by("ID"), "key-tenant").send_keys("acme")
    browser.find_element(by("ID"), "key-name").send_keys("console-made")
    browser.find_element(by("CSS_SELECTOR"), 'form[aria-label="Create an API key"] button').click()
    key = wait(browser, lambda d: text_of(d, "new-key-value"), "the new key shown once")
    assert key.startswith("sk-") or len(key) > 20
    wait(browser, lambda d: "console-made" in text_of(d, "key-list"), "the new key listed")
    screenshot(browser, tmp_path, "keys")

    replies = chat(suite, key, 3)
    assert [r.status_code for r in replies] == [200, 200, 200], replies[0].text
    decision_id = replies[-1].headers["x-atp-decision-id"]

    go(browser, "requests", "requests-list")
    choose(browser, "req-tenant", "acme")
    button = f'button[data-decision="{decision_id}"]'
    wait(browser, lambda d: d.find_elements(by("CSS_SELECTOR"), button), "the request listed")
    click(browser, button)
    detail = wait(browser, lambda d: text_of(d, "request-detail"), "the decision opened")
    served = replies[-1].headers["x-atp-model"]
    for expected in (
        f"Decision {decision_id}",
        "Propensity",
        "Candidates",
        served,
        "Time to first token",
        "Trace id",
        "Feedback",
    ):
        assert expected in detail, expected
    screenshot(browser, tmp_path, "requests")

    go(browser, "spend", "spend-totals")
    choose(browser, "spend-tenant", "acme")
    wait(
        browser,
        lambda d: "acme" in text_of(d, "spend-data") and "Budgets of acme" in text_of(d, "spend-data"),
        "acme's spend",
    )
    before = text_of(browser, "spend-totals")
    assert chat(suite, key, 2, user="dana")[-1].status_code == 200
    # The page refreshes itself (every 5 s): the totals move without a reload.
    wait(browser, lambda d: text_of(d, "spend-totals") != before, "spend moving after two more requests")
    screenshot(browser, tmp_path, "spend")
    # Broken down by end user: the two requests made for dana, the others for nobody in particular.
    choose(browser, "spend-group", "user")
    wait(
        browser,
        lambda d: "By end user" in (t := text_of(d, "spend-data")) and "dana" in t and "(none)" in t,
        "spend by end user",
    )
    choose(browser, "spend-group", "key")
    wait(browser, lambda d: "By API key" in text_of(d, "spend-data"), "spend by API key")

    go(browser, "keys", "key-list")
    revoke = 'button[aria-label="Revoke key console-made"]'
    click(browser, revoke)
    wait(browser, lambda d: not d.find_elements(by("CSS_SELECTOR"), revoke), "the key revoked")
    refused = wait(
        browser, lambda d: (r := chat(suite, key)[0]).status_code == 401 and r, "the revoked key refused", 5
    )
    assert refused.json()["error"]["code"] == "invalid_api_key"

    go(browser, "routing", "routing-data")
    wait(browser, lambda d: "Route auto" in text_of(d, "routing-data"), "the routing page")
    routing = text_of(browser, "routing-data")
    assert "Learned arm statistics" in routing and "local-small" in routing and "Policy version" in routing
    screenshot(browser, tmp_path, "routing")
    go(browser, "health", "health-data")
    health = wait(
        browser,
        lambda d: "Observation store" in text_of(d, "health-data") and text_of(d, "health-data"),
        "health",
    )
    assert health.count("SERVING") >= 3 and "sqlite" in health
    assert "observations queued" in health and "bytes spooled" in health
    screenshot(browser, tmp_path, "health")


def test_an_operator_rotates_a_key_and_sets_limits_and_budgets(
    suite: Suite, browser: Any, tmp_path: Path
) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    made = httpx.post(
        f"{suite.url}/v1/admin/keys", json={"tenant": "globex", "name": "rotate-me"}, headers=admin
    )
    assert made.status_code == 201, made.text
    old_key = made.json()["key"]
    sign_in(browser, suite, ADMIN_KEY)
    wait(browser, signed_in, "signed in")
    go(browser, "keys", "key-list")

    limit = wait(
        browser,
        lambda d: d.find_elements(
            by("CSS_SELECTOR"), 'input[aria-label^="Requests per minute for key rotate-me"]'
        ),
        "the key's limit field",
    )[0]
    limit.send_keys("42")
    click(browser, 'button[aria-label="Save limit of key rotate-me"]')

    # The table is drawn again from the API's answer once the change is saved.
    saved = 'input[aria-label^="Requests per minute for key rotate-me"][value="42"]'
    wait(browser, lambda d: d.find_elements(by("CSS_SELECTOR"), saved), "the key's limit saved")
    keys = httpx.get(f"{suite.url}/v1/admin/keys", params={"tenant": "globex"}, headers=admin).json()["data"]
    assert next(k for k in keys if k["name"] == "rotate-me")["limits"]["requests_per_minute"] == 42

    click(browser, 'button[aria-label="Rotate key rotate-me"]')
    new_key = wait(
        browser, lambda d: "rotated" in text_of(d, "new-key") and text_of(d, "new-key-value"), "the new key"
    )
    assert new_key != old_key
    assert chat(suite, new_key)[0].status_code == 200
    wait(browser, lambda _d: chat(suite, old_key)[0].status_code == 401, "the old key refused", 5)

    choose(browser, "settings-tenant", "globex")
    form = 'form[aria-label="Settings of tenant globex"]'
    budget = wait(
        browser, lambda d: d.find_elements(by("CSS_SELECTOR"), f"{form} #tenant-daily_budget_usd"), "globex"
    )
    budget[0].send_keys("7.5")
    click(browser, f"{form} button")
    wait(browser, lambda d: "daily_budget_usd" in text_of(d, "tenant-settings"), "the override listed")
    tenant = httpx.get(f"{suite.url}/v1/admin/tenants/globex", headers=admin).json()
    assert tenant["daily_budget_usd"] == 7.5 and "daily_budget_usd" in tenant["overridden"]
    screenshot(browser, tmp_path, "keys-rotated")


def test_a_wrong_key_cannot_sign_in(suite: Suite, browser: Any, tmp_path: Path) -> None:
    sign_in(browser, suite, "sk-not-a-key-of-anyone")
    error = wait(browser, lambda d: text_of(d, "sign-in-error"), "the refusal")
    assert "refused" in error.lower()
    assert not signed_in(browser)
    assert browser.execute_script("return sessionStorage.length") == 0
    screenshot(browser, tmp_path, "sign-in-refused")


def test_a_tenant_key_sees_only_its_tenant(suite: Suite, browser: Any, tmp_path: Path) -> None:
    assert chat(suite, GLOBEX_KEY)[0].status_code == 200
    assert chat(suite, ACME_KEY)[0].status_code == 200
    sign_in(browser, suite, ACME_KEY)
    wait(browser, signed_in, "signed in")
    go(browser, "requests", "requests-list")
    options = [
        o.get_attribute("value") for o in browser.find_elements(by("CSS_SELECTOR"), "#req-tenant option")
    ]
    assert options == ["acme"]
    wait(browser, lambda d: d.find_elements(by("CSS_SELECTOR"), "#requests-list table"), "acme's requests")
    go(browser, "spend", "spend-totals")
    assert [
        o.get_attribute("value") for o in browser.find_elements(by("CSS_SELECTOR"), "#spend-tenant option")
    ] == ["acme"]
    assert "Tenant" not in [o.text for o in browser.find_elements(by("CSS_SELECTOR"), "#spend-group option")]
    screenshot(browser, tmp_path, "tenant-spend")
    go(browser, "keys", "page")
    wait(browser, lambda d: "operator key" in text_of(d, "page"), "keys need an admin")
    assert not browser.find_elements(by("CSS_SELECTOR"), "button.danger")
    # The console grants nothing the API would not: the same key asking for another tenant is refused.
    other = httpx.get(
        f"{suite.url}/v1/admin/observations",
        params={"tenant": "globex"},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    assert other.status_code == 403
    routing = httpx.get(f"{suite.url}/v1/admin/routing", headers={"authorization": f"Bearer {ACME_KEY}"})
    assert routing.status_code == 403


def options_of(driver: Any, select_id: str) -> list[str]:
    return [
        o.get_attribute("value") for o in driver.find_elements(by("CSS_SELECTOR"), f"#{select_id} option")
    ]


def test_a_tenant_admin_sees_only_its_tenant(suite: Suite, browser: Any, tmp_path: Path) -> None:
    operator = {"authorization": f"Bearer {ADMIN_KEY}"}
    for tenant, name in (("globex", "globex-hidden"), ("acme", "acme-visible")):
        made = httpx.post(
            f"{suite.url}/v1/admin/keys", json={"tenant": tenant, "name": name}, headers=operator
        )
        assert made.status_code == 201, made.text
    assert chat(suite, GLOBEX_KEY)[0].status_code == 200
    sign_in(browser, suite, ACME_ADMIN_KEY)
    wait(browser, signed_in, "signed in")
    wait(browser, lambda d: "tenant_admin" in text_of(d, "who"), "the principal shown")

    go(browser, "keys", "key-list")
    keys = wait(
        browser, lambda d: "acme-visible" in text_of(d, "key-list") and text_of(d, "key-list"), "keys"
    )
    assert "globex" not in keys and "acme-admin" in keys
    tenant_field = browser.find_element(by("ID"), "key-tenant")
    assert tenant_field.get_attribute("value") == "acme" and tenant_field.get_attribute("readonly")
    assert options_of(browser, "key-role") == ["user", "tenant_admin"]
    assert options_of(browser, "settings-tenant") == ["acme"]
    browser.find_element(by("ID"), "key-name").send_keys("made-by-acme-admin")
    browser.find_element(by("CSS_SELECTOR"), 'form[aria-label="Create an API key"] button').click()
    wait(browser, lambda d: text_of(d, "new-key-value"), "the new key shown once")
    wait(browser, lambda d: "made-by-acme-admin" in text_of(d, "key-list"), "the new key listed")
    audit = wait(
        browser, lambda d: "key.create" in text_of(d, "audit-log") and text_of(d, "audit-log"), "audit"
    )
    # The operator's globex key is in the log, but not in acme's view of it.
    assert "acme" in audit and "globex" not in audit
    screenshot(browser, tmp_path, "tenant-admin-keys")

    go(browser, "requests", "requests-list")
    assert options_of(browser, "req-tenant") == ["acme"]
    go(browser, "spend", "spend-totals")
    assert options_of(browser, "spend-tenant") == ["acme"]
    for page, element in (("routing", "routing-data"), ("health", "health-data")):
        go(browser, page, element)
        wait(browser, lambda d, e=element: "operator key" in text_of(d, e), f"{page} needs an operator")
    # What the page hides, the API refuses.
    mine = {"authorization": f"Bearer {ACME_ADMIN_KEY}"}
    other = httpx.get(f"{suite.url}/v1/admin/keys", params={"tenant": "globex"}, headers=mine)
    assert other.status_code == 403


# The accessible name of each control, as a screen reader would find it: a <label for>, a wrapping
# label, aria-label, or (buttons and links) their text.
_UNLABELLED = """
const named = (el) => (el.labels && [...el.labels].some((l) => l.textContent.trim()))
  || (el.getAttribute('aria-label') || '').trim()
  || (['BUTTON', 'A'].includes(el.tagName) && el.textContent.trim());
return [...document.querySelectorAll('input, select, button, a[href], textarea')]
  .filter((el) => el.offsetParent !== null && !named(el)).map((el) => el.outerHTML.slice(0, 120));
"""

# Every visible text's contrast against the first opaque background behind it (WCAG 2 formula).
_LOW_CONTRAST = """
const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]; };
const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length === 3 || c[3] > 0) return c.slice(0, 3); } return [255, 255, 255]; };
const out = [];
for (const el of document.querySelectorAll('body *')) {
  if (el.closest('svg') || el.offsetParent === null) continue;
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  const field = ['INPUT', 'SELECT', 'BUTTON'].includes(el.tagName);
  if (!own && !field) continue;
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) out.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
}
return out;
"""


def test_every_control_is_labelled_reachable_by_keyboard_and_readable(
    suite: Suite, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{suite.url}/console")
    wait(
        browser,
        lambda d: d.switch_to.active_element.get_attribute("id") == "api-key",
        "the key field focused",
    )
    assert browser.execute_script(_UNLABELLED) == []
    assert browser.execute_script(_LOW_CONTRAST) == []
    screenshot(browser, tmp_path, "sign-in")
    # Keyboard only: type the key, Enter signs in.
    browser.switch_to.active_element.send_keys(ADMIN_KEY, Keys.ENTER)
    wait(browser, signed_in, "signed in by keyboard")
    for page in PAGES:
        browser.get(f"{suite.url}/console/#/{page}")
        wait(browser, showing(page), page)
        wait(
            browser,
            lambda d: d.find_elements(by("CSS_SELECTOR"), "#page table, #page p.muted"),
            f"{page} data",
        )
        assert browser.execute_script(_UNLABELLED) == [], page
        assert browser.execute_script(_LOW_CONTRAST) == [], page
    # Tab from the top reaches the skip link, then each page link in order; Enter follows one.
    # A fresh load (signed in from the session) starts keyboard navigation at the top of the document.
    browser.get(f"{suite.url}/console/#/spend")
    browser.refresh()
    wait(browser, lambda d: d.find_elements(by("ID"), "spend-totals"), "spend")
    browser.find_element(by("TAG_NAME"), "body").send_keys(Keys.TAB)
    seen = []
    for _ in range(12):
        active = browser.switch_to.active_element
        seen.append(active.text or active.get_attribute("id"))
        if active.text == "Health":
            break
        active.send_keys(Keys.TAB)
    assert seen[:6] == ["Skip to content", "Spend", "Requests", "Routing", "Keys and tenants", "Health"], seen
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(
        browser,
        lambda d: (
            d.find_elements(by("ID"), "health-data")
            and d.find_element(by("ID"), "page").get_attribute("data-page") == "health"
        ),
        "health by keyboard",
    )
    # The page's controls follow the navigation in tab order: Requests' filters, then its decision buttons.
    browser.get(f"{suite.url}/console/#/requests")
    wait(browser, lambda d: d.find_elements(by("ID"), "req-tenant"), "requests")
    browser.find_element(by("ID"), "req-tenant").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "req-model"
    screenshot(browser, tmp_path, "keyboard")


def _luminance(hex_color: str) -> float:
    channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_the_palette_meets_wcag_aa() -> None:
    from atp_gateway.console import STATIC_DIR

    css = (STATIC_DIR / "console.css").read_text()
    palette = dict(
        (name.strip(), value.strip())
        for name, value in (
            line.strip().rstrip(";").split(":", 1)
            for line in css.splitlines()
            if line.strip().startswith("--")
        )
    )
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    text_pairs = [
        (fg, bg)
        for fg in ("--fg", "--muted", "--accent", "--danger", "--ok", "--warn")
        for bg in ("--bg", "--surface")
    ] + [("--accent-fg", bg) for bg in ("--accent", "--danger", "--ok", "--warn")]
    for fg, bg in text_pairs:
        assert contrast(palette[fg], palette[bg]) >= 4.5, (fg, bg)
    # Non-text: focus rings, borders of controls and chart series need 3:1 against what is around them.
    for colour in ("--focus", "--border", *(f"--series-{i}" for i in range(1, 7))):
        assert contrast(palette[colour], palette["--bg"]) >= 3.0, colour
