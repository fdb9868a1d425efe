"""The whole suite (router, observer on SQLite, adapters, gateway) in-process on loopback ports, on an event
loop of its own in a thread, so a blocking browser driver can run beside it; and the headless Chromium."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from atp_adapters.server import build_server as build_adapters
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings
from atp_observer.server import build_server as build_observer
from atp_observer.settings import ObserverSettings
from atp_router.server import build_server as build_router
from atp_router.settings import RouterSettings
from tests.support.stack import until

ADMIN_KEY = "sk-console-admin-0001"
# A configuration key with the role's name before scoped administration: read as operator.
LEGACY_ADMIN_KEY = "sk-console-legacy-01"
ACME_KEY = "sk-console-acme-00001"
ACME_ADMIN_KEY = "sk-console-acme-admin"
GLOBEX_KEY = "sk-console-globex-001"
GLOBEX_ADMIN_KEY = "sk-console-globex-adm"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


CONFIG: dict[str, Any] = {
    "providers": {"local": {"type": "local"}},
    "models": {
        # Dear prices, so a handful of short requests moves the spend visibly.
        "local-small": {"provider": "local", "input_usd_per_mtok": 200, "output_usd_per_mtok": 800},
        "local-large": {"provider": "local", "input_usd_per_mtok": 500, "output_usd_per_mtok": 2000},
    },
    "routes": {"auto": {"candidates": ["local-small", "local-large"], "policy": "thompson"}},
    "tenants": {
        "ops": {
            "api_keys": [
                {"hash": _hash(ADMIN_KEY), "role": "operator", "name": "operator"},
                {"hash": _hash(LEGACY_ADMIN_KEY), "role": "admin", "name": "legacy-admin"},
            ]
        },
        "acme": {
            "daily_budget_usd": 2,
            "monthly_budget_usd": 30,
            "api_keys": [
                {"hash": _hash(ACME_KEY), "name": "acme-app"},
                {"hash": _hash(ACME_ADMIN_KEY), "role": "tenant_admin", "name": "acme-admin"},
            ],
        },
        "globex": {
            "api_keys": [
                {"hash": _hash(GLOBEX_KEY), "name": "globex-app"},
                {"hash": _hash(GLOBEX_ADMIN_KEY), "role": "tenant_admin", "name": "globex-admin"},
            ]
        },
    },
}


class Suite:
    """The four services on a private event loop; `url` is the gateway's."""

    def __init__(self, tmp_path: Path, database_url: str = ""):
        self._tmp = tmp_path
        self._database_url = database_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="console-suite", daemon=True)
        self._stack = AsyncExitStack()
        self.url = ""
        self.app: Any = None
        self.adapters: Any = None

    def run(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run `coro` on the suite's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    def stop(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _start(self) -> None:
        config = AtpConfig.model_validate(CONFIG)
        common = {"port": 0, "metrics_port": None, "drain_delay_s": 0, "grace_s": 1}
        shared = {"directory_path": str(self._tmp / "tenants.json")}
        observer = await build_observer(
            ObserverSettings(
                **common,
                database_url=self._database_url,
                sqlite_path=str(self._tmp / "observer.sqlite3"),
                rewards_poll_s=0.1,
            ),
            config=config,
        )
        self._stack.push_async_callback(observer.stop_now)
        router = await build_router(
            RouterSettings(
                **common,
                **shared,
                observer_addr=observer.address,
                reload_on_sighup=False,
                snapshot_min_interval_s=0,
            ),
            config=config,
        )
        self._stack.push_async_callback(router.stop_now)
        adapters = await build_adapters(
            AdaptersSettings(
                **common,
                **shared,
                directory_poll_s=0.05,
                router_addr=router.address,
                observer_addr=observer.address,
                spool_dir=str(self._tmp / "spool"),
                ship_interval_s=0.05,
            ),
            config=config,
        )
        self._stack.push_async_callback(adapters.stop_now)
        self.adapters = adapters
        settings = GatewaySettings(
            **common,
            **shared,
            directory_poll_s=0.05,
            adapters_addr=adapters.address,
            router_addr=router.address,
            observer_addr=observer.address,
        )
        self.app = create_app(settings, config=config)
        gateway = GatewayServer(settings, self.app)
        await gateway.start()
        self._stack.push_async_callback(gateway.stop_now)
        await until(lambda: gateway.gateway.ready, what="gateway ready")
        self.url = f"http://127.0.0.1:{gateway.port}"


@contextmanager
def running_suite(tmp_path: Path, database_url: str = "") -> Iterator[Suite]:
    """The suite started, stopped on exit; observations in PostgreSQL at `database_url` when given."""
    suite = Suite(tmp_path, database_url)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver (make browser-deps installs them); skip without them, unless CI
    requires every service (ATP_REQUIRE_SERVICES), where their absence is a failure."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "chromium and chromium-driver are not installed (make browser-deps)"
    if os.environ.get("ATP_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
