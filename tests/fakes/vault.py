"""A fake Vault (a real aiohttp server on loopback) speaking the endpoints hvac uses: KV v2, token, AppRole, Kubernetes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Token:
    """A token the fake issued: its lease, and whether it can be renewed."""

    ttl_s: float
    renewable: bool
    expires_at: float | None  # None: never expires
    renewals: int = 0

    def valid(self) -> bool:
        return self.expires_at is None or time.monotonic() < self.expires_at


@dataclass
class FakeVault:
    """KV v2 under any mount, token lookup/renew-self, AppRole and Kubernetes login.

    Tests set `approles` (role_id -> secret_id), `k8s_roles` (role -> accepted JWT), issue tokens with
    `issue_token`, write secrets with `put`, and inject faults: `renew_fails` (renew-self answers 403),
    `hang_s` (every request waits that long), `login_ttl_s` and `login_renewable` for issued logins.
    """

    approles: dict[str, str] = field(default_factory=dict)
    k8s_roles: dict[str, str] = field(default_factory=dict)
    login_ttl_s: float = 3600.0
    login_renewable: bool = True
    renew_fails: bool = False
    hang_s: float = 0.0
    tokens: dict[str, Token] = field(default_factory=dict)
    kv: dict[tuple[str, str], tuple[dict[str, Any], int]] = field(default_factory=dict)
    # What was asked, for assertions.
    calls: list[tuple[str, str]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    logins: dict[str, int] = field(default_factory=dict)
    renewals: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def issue_token(self, ttl_s: float = 0.0, renewable: bool = False) -> str:
        token = "hvs." + secrets.token_urlsafe(16)
        self.tokens[token] = Token(ttl_s, renewable, time.monotonic() + ttl_s if ttl_s else None)
        return token

    def revoke_all(self) -> None:
        self.tokens.clear()

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> int:
        """Write a new version of the secret at mount/path; returns its version number."""
        _, version = self.kv.get((mount, path), ({}, 0))
        self.kv[(mount, path)] = (dict(data), version + 1)
        return version + 1

    def reads(self, path: str, mount: str = "secret") -> int:
        return self.calls.count(("GET", f"/v1/{mount}/data/{path}"))

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/v1/auth/token/lookup-self", self._lookup_self)
        app.router.add_post("/v1/auth/token/renew-self", self._renew_self)
        app.router.add_post("/v1/auth/approle/login", self._approle_login)
        app.router.add_post("/v1/auth/kubernetes/login", self._k8s_login)
        app.router.add_get("/v1/{mount}/data/{path:.+}", self._kv_read)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if request.headers.get("X-Vault-Namespace"):
            self.namespaces.append(request.headers["X-Vault-Namespace"])
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        return await handler(request)

    @staticmethod
    def _denied() -> web.Response:
        return web.json_response({"errors": ["permission denied"]}, status=403)

    def _token(self, request: web.Request) -> tuple[str, Token] | None:
        name = request.headers.get("X-Vault-Token", "")
        token = self.tokens.get(name)
        if token is None or not token.valid():
            return None
        return name, token

    def _login(self, method: str) -> web.Response:
        self.logins[method] = self.logins.get(method, 0) + 1
        client_token = self.issue_token(self.login_ttl_s, self.login_renewable)
        return web.json_response(
            {
                "auth": {
                    "client_token": client_token,
                    "accessor": "acc",
                    "policies": ["default", "atp"],
                    "lease_duration": int(self.login_ttl_s) if self.login_ttl_s >= 1 else self.login_ttl_s,
                    "renewable": self.login_renewable,
                }
            }
        )

    async def _lookup_self(self, request: web.Request) -> web.Response:
        found = self._token(request)
        if found is None:
            return self._denied()
        _, token = found
        remaining = 0.0 if token.expires_at is None else max(token.expires_at - time.monotonic(), 0.0)
        return web.json_response(
            {"data": {"ttl": remaining, "renewable": token.renewable, "policies": ["default", "atp"]}}
        )

    async def _renew_self(self, request: web.Request) -> web.Response:
        found = self._token(request)
        if found is None or self.renew_fails or not found[1].renewable:
            return self._denied()
        name, token = found
        token.expires_at = time.monotonic() + token.ttl_s
        token.renewals += 1
        self.renewals += 1
        return web.json_response(
            {"auth": {"client_token": name, "lease_duration": token.ttl_s, "renewable": True}}
        )

    async def _approle_login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.approles.get(body.get("role_id")) != body.get("secret_id"):
            return web.json_response({"errors": ["invalid role or secret ID"]}, status=400)
        return self._login("approle")

    async def _k8s_login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.k8s_roles.get(body.get("role")) != body.get("jwt"):
            return self._denied()
        return self._login("kubernetes")

    async def _kv_read(self, request: web.Request) -> web.Response:
        if self._token(request) is None:
            return self._denied()
        key = (request.match_info["mount"], request.match_info["path"])
        if key not in self.kv:
            return web.json_response({"errors": []}, status=404)
        data, version = self.kv[key]
        return web.json_response(
            {
                "data": {
                    "data": data,
                    "metadata": {"version": version, "deletion_time": "", "destroyed": False},
                }
            }
        )


@asynccontextmanager
async def running_fake_vault(**kwargs: Any) -> AsyncIterator[FakeVault]:
    vault = FakeVault(**kwargs)
    await vault.start()
    try:
        yield vault
    finally:
        await vault.stop()
