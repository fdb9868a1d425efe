"""The Vault backend: hvac in one worker thread, token/AppRole/Kubernetes login, KV v2 reads, lease renewal."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests
from prometheus_client import Counter

from atp_adapters.secrets.references import SecretDenied, SecretError
from atp_adapters.secrets.settings import VaultSettings
from atp_common.errors import ConfigError
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.secrets.vault")

T = TypeVar("T")

VAULT_AUTH = Counter(
    "atp_vault_auth_total", "Vault logins and token renewals by outcome.", ["operation", "result"]
)
# Slack over hvac's own HTTP timeout, so that our bound fires only when the worker thread is stuck.
_CALL_SLACK_S = 1.0
_RELOGIN_BACKOFF_INITIAL_S = 0.5
_RELOGIN_BACKOFF_MAX_S = 30.0


class VaultBackend:
    """Reads KV v2 secrets from Vault and keeps its token alive.

    hvac is synchronous, so every call runs in one dedicated worker thread (which also serialises use of
    hvac's requests session), bounded by hvac's HTTP timeout and by an asyncio deadline over it. Nothing
    here runs on a request path: the resolver calls it at start-up and from its background refresh.
    `start()` launches the lease task: renew-self after `renew_fraction` of the lease, log in again when
    renewal fails or the token can no longer be renewed; `close()` cancels it.
    """

    def __init__(self, settings: VaultSettings) -> None:
        if not settings.addr:
            raise ConfigError("vault: ATP_VAULT_ADDR is not set")
        if settings.auth_method == "none":
            raise ConfigError(
                "vault: no auth method configured (set ATP_VAULT_TOKEN, ATP_VAULT_ROLE_ID and "
                "ATP_VAULT_SECRET_ID, or ATP_VAULT_K8S_ROLE)"
            )
        self.settings = settings
        # Explicit token, verify and namespace: hvac would otherwise read VAULT_TOKEN, ~/.vault-token etc.
        self._client = hvac.Client(
            url=settings.addr,
            token="",
            verify=settings.ca_cert or True,
            timeout=settings.timeout_s,
            namespace=settings.namespace or None,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="atp-vault")
        self._login_lock = asyncio.Lock()
        self._logged_in = False
        self._lease_s = 0.0  # 0: the token does not expire
        self._renewable = False
        self._obtained_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # For diagnostics and tests.
        self.logins = 0
        self.renewals = 0

    # The worker thread.

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise SecretError(f"vault {what}: the Vault client is closed")
        loop = asyncio.get_running_loop()
        addr = self.settings.addr
        try:
            async with asyncio.timeout(self.settings.timeout_s + _CALL_SLACK_S):
                return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except TimeoutError as exc:
            raise SecretError(
                f"vault {what}: no answer from {addr} within {self.settings.timeout_s:g}s"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise SecretError(
                f"vault {what}: no answer from {addr} within {self.settings.timeout_s:g}s"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise SecretError(f"vault {what}: cannot reach {addr}: {type(exc).__name__}") from exc
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise SecretDenied(f"vault {what}: permission denied ({_first_error(exc)})") from exc
        except hvac.exceptions.InvalidPath as exc:
            raise SecretError(f"vault {what}: not found") from exc
        except hvac.exceptions.VaultError as exc:
            raise SecretError(f"vault {what}: {type(exc).__name__} ({_first_error(exc)})") from exc
        except OSError as exc:  # the Kubernetes service-account token file
            raise SecretError(f"vault {what}: {exc.strerror or exc}") from exc
        except (KeyError, TypeError) as exc:
            raise SecretError(f"vault {what}: unexpected answer from {addr}: {exc!r}") from exc

    def _login_sync(self) -> tuple[float, bool]:
        settings, client = self.settings, self._client
        method = settings.auth_method
        if method == "token":
            client.token = settings.token.get_secret_value()
            data = client.auth.token.lookup_self()["data"]
            return float(data.get("ttl") or 0), bool(data.get("renewable"))
        if method == "approle":
            secret_id = settings.secret_id.get_secret_value() or None
            auth = client.auth.approle.login(
                role_id=settings.role_id, secret_id=secret_id, mount_point=settings.approle_mount
            )["auth"]
        else:
            # Read at every login: projected service-account tokens are rotated by the kubelet.
            jwt = Path(settings.k8s_token_path).read_text().strip()
            auth = client.auth.kubernetes.login(settings.k8s_role, jwt, mount_point=settings.k8s_mount)[
                "auth"
            ]
        return float(auth.get("lease_duration") or 0), bool(auth.get("renewable"))

    def _renew_sync(self) -> tuple[float, bool]:
        auth = self._client.auth.token.renew_self()["auth"]
        return float(auth.get("lease_duration") or 0), bool(auth.get("renewable"))

    def _read_sync(self, path: str) -> dict[str, str]:
        reply = self._client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self.settings.mount, raise_on_deleted_version=True
        )
        data = reply["data"]["data"] or {}
        return {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}

    # Auth and leases.

    async def login(self) -> None:
        """Log in with the configured method (one login at a time)."""
        async with self._login_lock:
            try:
                lease_s, renewable = await self._call(f"{self.settings.auth_method} login", self._login_sync)
            except SecretError:
                VAULT_AUTH.labels("login", "error").inc()
                raise
            VAULT_AUTH.labels("login", "ok").inc()
            self._set_lease(lease_s, renewable)
            self._logged_in = True
            self.logins += 1
            log.info("vault login", extra={"method": self.settings.auth_method, "lease_s": lease_s})

    async def renew(self) -> None:
        """Renew our token (renew-self)."""
        try:
            lease_s, renewable = await self._call("token renewal", self._renew_sync)
        except SecretError:
            VAULT_AUTH.labels("renew", "error").inc()
            raise
        VAULT_AUTH.labels("renew", "ok").inc()
        self._set_lease(lease_s, renewable)
        self.renewals += 1

    def _set_lease(self, lease_s: float, renewable: bool) -> None:
        self._lease_s = lease_s
        self._obtained_at = time.monotonic()
        # A lease too short to renew in time (the token hit its max TTL) needs a fresh login instead.
        margin = lease_s * (1 - self.settings.renew_fraction)
        self._renewable = renewable and margin > self.settings.timeout_s

    def _renewal_delay(self) -> float | None:
        if not self._logged_in:
            return 0.0
        if self._lease_s <= 0:
            return None
        due = self._obtained_at + self._lease_s * self.settings.renew_fraction
        return max(due - time.monotonic(), 0.0)

    async def read(self, path: str) -> dict[str, str]:
        """The fields of the KV v2 secret at `path` (latest version). Logs in first when needed, and once
        more when Vault says our token is no longer valid."""
        if not self._logged_in:
            await self.login()
        try:
            return await self._call(f"read {self.settings.mount}/{path}", self._read_sync, path)
        except SecretDenied:
            await self.login()
            return await self._call(f"read {self.settings.mount}/{path}", self._read_sync, path)

    def start(self) -> None:
        """Start keeping the token alive (idempotent)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._lease_loop(), name="vault-lease")

    async def _lease_loop(self) -> None:
        failures = 0
        while True:
            delay = self._renewal_delay()
            if delay is None:
                return  # a token without expiry: nothing to renew
            if failures:
                delay = min(_RELOGIN_BACKOFF_INITIAL_S * 2 ** (failures - 1), _RELOGIN_BACKOFF_MAX_S)
            await asyncio.sleep(delay)
            try:
                if self._logged_in and self._renewable and not failures:
                    try:
                        await self.renew()
                        continue
                    except SecretError as exc:
                        log.warning("vault token renewal failed, logging in again: %s", exc)
                await self.login()
                failures = 0
            except SecretError as exc:
                failures += 1
                log.error("vault login failed (attempt %d): %s", failures, exc)

    async def close(self) -> None:
        """Stop the lease task and the worker thread."""
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        # Do not wait for a call stuck on the network: hvac's timeout ends it, the thread then exits.
        self._executor.shutdown(wait=False, cancel_futures=True)


def _first_error(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return str(errors[0])[:200]
    return str(exc).split(", on ")[0][:200] or type(exc).__name__
