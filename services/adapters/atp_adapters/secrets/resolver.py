"""SecretResolver: secret references to live values, cached, refreshed in the background, rotation-aware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import Counter

from atp_adapters.secrets.references import Reference, SecretError, parse_reference
from atp_adapters.secrets.settings import VaultSettings
from atp_adapters.secrets.vault import VaultBackend
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.secrets")

SECRET_REFRESHES = Counter(
    "atp_secret_refreshes_total",
    "Background re-reads of secrets by scheme and outcome (changed, unchanged, error).",
    ["scheme", "result"],
)


class SecretRef:
    """A live secret. `value` is a plain attribute read (no I/O): callers read it per request or per
    connection and compare `version` to notice a rotation. The resolver replaces the value in the
    background; `request_refresh()` asks for an early re-read (e.g. after the provider answered 401)."""

    __slots__ = ("_resolver", "reference", "value", "version")

    def __init__(
        self, reference: Reference | None, value: str, resolver: SecretResolver | None = None
    ) -> None:
        self.reference = reference
        self.value = value
        self.version = 0
        self._resolver = resolver

    @classmethod
    def static(cls, value: str) -> SecretRef:
        """A fixed value that never changes (tests, servers without auth)."""
        return cls(None, value)

    def request_refresh(self) -> None:
        """Ask for a re-read soon (rate-limited by the resolver); no effect on a static value."""
        if self._resolver is not None and self.reference is not None and self.reference.scheme != "env":
            self._resolver.request_refresh()

    def _update(self, value: str) -> bool:
        if value == self.value:
            return False
        self.value = value
        self.version += 1
        return True

    def __repr__(self) -> str:  # never the value
        return f"SecretRef({self.reference}, version={self.version})"


def read_static(reference: Reference, environ: Mapping[str, str] | None = None) -> str:
    """The value behind an `env:` or `file:` reference (one trailing newline of a file stripped)."""
    if reference.scheme == "env":
        value = (os.environ if environ is None else environ).get(reference.target)
        if value is None:
            raise SecretError(f"secret {reference}: environment variable {reference.target} is not set")
        return value
    if reference.scheme == "file":
        try:
            text = Path(reference.target).read_text()
        except OSError as exc:
            raise SecretError(f"secret {reference}: cannot read {reference.target}: {exc.strerror}") from exc
        return text.removesuffix("\n").removesuffix("\r")
    raise SecretError(f"secret {reference}: no Vault resolver is configured")


class SecretResolver:
    """Resolves `env:`, `file:` and `vault:` references and keeps the values current.

    `await ref(reference)` reads the secret now (a missing or unreadable secret is a ConfigError at
    start-up, not a failure on the first request) and returns the SecretRef that every later reader
    shares. After `start()`, a background task re-reads `file:` and `vault:` secrets every `cache_ttl_s`
    (files too: Kubernetes rotates mounted secrets in place) and on `request_refresh()`, at most once per
    `min_refresh_s`; a failed re-read keeps the last good value and is logged. `close()` cancels the task
    and the Vault lease renewal.
    """

    def __init__(
        self,
        vault: VaultBackend | None = None,
        *,
        cache_ttl_s: float = 300.0,
        min_refresh_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.vault = vault
        self._cache_ttl_s = cache_ttl_s
        self._min_refresh_s = min_refresh_s
        self._environ = environ
        self._refs: dict[Reference, SecretRef] = {}
        # path -> (fields, monotonic time read): one Vault read serves every key of a path within the TTL.
        self._vault_cache: dict[str, tuple[dict[str, str], float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: VaultSettings | None = None) -> SecretResolver:
        """A resolver with a Vault backend when ATP_VAULT_ADDR is set (settings read from the environment
        when not given)."""
        settings = settings if settings is not None else VaultSettings()
        vault = VaultBackend(settings) if settings.addr else None
        return cls(vault, cache_ttl_s=settings.cache_ttl_s, min_refresh_s=settings.min_refresh_s)

    async def ref(self, reference: str) -> SecretRef:
        """The live secret behind `reference`; an empty reference is an empty static value."""
        if not reference:
            return SecretRef.static("")
        parsed = parse_reference(reference)
        existing = self._refs.get(parsed)
        if existing is not None:
            return existing
        secret = SecretRef(parsed, await self._read(parsed, max_age_s=self._cache_ttl_s), self)
        self._refs[parsed] = secret
        return secret

    async def resolve(self, reference: str) -> str:
        """The current value behind `reference` (reads it now when not cached)."""
        return (await self.ref(reference)).value

    async def _read(self, reference: Reference, *, max_age_s: float) -> str:
        if reference.scheme != "vault":
            return read_static(reference, self._environ)
        if self.vault is None:
            raise SecretError(f"secret {reference}: no Vault is configured (set ATP_VAULT_ADDR)")
        cached = self._vault_cache.get(reference.target)
        if cached is not None and time.monotonic() - cached[1] < max_age_s:
            fields = cached[0]
        else:
            fields = await self.vault.read(reference.target)
            self._vault_cache[reference.target] = (fields, time.monotonic())
        if reference.key not in fields:
            raise SecretError(f"secret {reference}: the Vault secret has no field {reference.key!r}")
        return fields[reference.key]

    def request_refresh(self) -> None:
        """Wake the refresh task now (it still waits `min_refresh_s` between rounds)."""
        self._wake.set()

    async def refresh(self) -> list[SecretRef]:
        """Re-read every refreshable secret now; returns those whose value changed."""
        changed: list[SecretRef] = []
        fresh_paths: set[str] = set()
        for reference, secret in list(self._refs.items()):
            if reference.scheme == "env":
                continue
            if reference.scheme == "vault" and reference.target not in fresh_paths:
                self._vault_cache.pop(reference.target, None)  # force one read per path per round
                fresh_paths.add(reference.target)
            try:
                value = await self._read(reference, max_age_s=self._cache_ttl_s)
            except SecretError as exc:
                SECRET_REFRESHES.labels(reference.scheme, "error").inc()
                log.warning("keeping the last value of %s: %s", reference, exc)
                continue
            if secret._update(value):
                changed.append(secret)
                SECRET_REFRESHES.labels(reference.scheme, "changed").inc()
                log.info("secret rotated", extra={"secret": str(reference), "version": secret.version})
            else:
                SECRET_REFRESHES.labels(reference.scheme, "unchanged").inc()
        return changed

    def start(self) -> None:
        """Start the background refresh (and Vault token renewal) when anything can change."""
        if self._task is not None:
            return
        schemes = {reference.scheme for reference in self._refs}
        if self.vault is not None and "vault" in schemes:
            self.vault.start()
        if schemes - {"env"}:
            self._task = asyncio.create_task(self._refresh_loop(), name="secret-refresh")

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cache_ttl_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # a bug here must not end rotation for good
                log.exception("secret refresh failed")
            # Bounds how often providers' refresh requests (after a 401 burst) reach Vault.
            await asyncio.sleep(self._min_refresh_s)

    async def close(self) -> None:
        """Cancel the refresh task and stop the Vault client."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.vault is not None:
            await self.vault.close()


def resolve_static(reference: str) -> str:
    """Synchronous resolution of `env:` and `file:` references (no Vault); an empty reference is ''."""
    if not reference:
        return ""
    return read_static(parse_reference(reference))
