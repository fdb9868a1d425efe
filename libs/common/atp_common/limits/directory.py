"""Dynamic API keys and tenant settings: stored in Redis (or a local file), followed by every replica."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from atp_common.config import KEY_LIMIT_FIELDS, KEY_POLICY_FIELDS, AtpConfig, Role, TenantConfig
from atp_common.limits.key_records import (
    KEY_PREFIX,
    KeyModels,
    KeyRecord,
    config_key_id,
    effective_key_limits,
    new_api_key,
)
from atp_common.limits.rules import TenantLimits, compile_limits, with_key_limits, with_user_budgets
from atp_common.settings import DirectorySettings
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.limits.directory")

__all__ = [
    "KEY_LIMIT_FIELDS",
    "KEY_POLICY_FIELDS",
    "KEY_PREFIX",
    "TENANT_FIELDS",
    "Directory",
    "DirectoryFollower",
    "DirectoryState",
    "DirectoryStore",
    "FileDirectoryStore",
    "KeyModels",
    "KeyRecord",
    "RedisDirectoryStore",
    "config_key_id",
    "effective_key_limits",
    "follow_directory",
    "new_api_key",
    "open_directory_store",
]

# The tenant settings the admin API may override; api_keys are managed as key records instead.
TENANT_FIELDS = tuple(f for f in TenantConfig.model_fields if f != "api_keys")


@dataclass(frozen=True, slots=True)
class DirectoryState:
    """What the store holds: key records by id and tenant overrides by tenant, with a version."""

    version: str = ""
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    tenants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class DirectoryStore(Protocol):
    """Persistence of the directory. Writers are the router's admin service; everyone else reads."""

    name: str

    async def version(self) -> str: ...

    async def load(self) -> DirectoryState: ...

    async def put_keys(self, records: list[KeyRecord]) -> None: ...

    async def put_tenant(self, tenant: str, overrides: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


class RedisDirectoryStore:
    """Two hashes (keys, tenants) and a version counter bumped in the same MULTI as every change, so a
    follower that sees a new version reads a consistent state."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "atp:", timeout_s: float = 1.0):
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, max_connections=8
        )
        self._keys = f"{prefix}dir:keys"
        self._tenants = f"{prefix}dir:tenants"
        self._version = f"{prefix}dir:version"

    async def version(self) -> str:
        value = await self._redis.get(self._version)
        return value.decode() if isinstance(value, bytes) else (value or "0")

    async def load(self) -> DirectoryState:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._version)
            pipe.hgetall(self._keys)
            pipe.hgetall(self._tenants)
            version, keys, tenants = await pipe.execute()
        return DirectoryState(
            version.decode() if version else "0",
            {k.decode(): KeyRecord.from_json(v) for k, v in keys.items()},
            {k.decode(): orjson.loads(v) for k, v in tenants.items()},
        )

    async def put_keys(self, records: list[KeyRecord]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for record in records:
                pipe.hset(self._keys, record.key_id, record.to_json())
            pipe.incr(self._version)
            await pipe.execute()

    async def put_tenant(self, tenant: str, overrides: Mapping[str, Any]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            if overrides:
                pipe.hset(self._tenants, tenant, orjson.dumps(dict(overrides)))
            else:
                pipe.hdel(self._tenants, tenant)
            pipe.incr(self._version)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class FileDirectoryStore:
    """The directory in one JSON file, replaced atomically: the embedded default, where the services run
    on one host (`make run`) and no Redis is configured. One writer (the router) is assumed."""

    name = "file"

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._lock = asyncio.Lock()

    async def version(self) -> str:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return "0"
        return f"{stat.st_mtime_ns}-{stat.st_size}"

    async def load(self) -> DirectoryState:
        version = await self.version()
        try:
            data = orjson.loads(self._path.read_bytes())
        except FileNotFoundError:
            return DirectoryState("0")
        keys = {k: KeyRecord.from_json(orjson.dumps(v)) for k, v in data.get("keys", {}).items()}
        return DirectoryState(version, keys, data.get("tenants", {}))

    async def _write(self, change: Callable[[dict[str, Any]], None]) -> None:
        async with self._lock:
            try:
                data = orjson.loads(self._path.read_bytes())
            except FileNotFoundError:
                data = {"keys": {}, "tenants": {}}
            change(data)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._path)

    async def put_keys(self, records: list[KeyRecord]) -> None:
        def change(data: dict[str, Any]) -> None:
            for record in records:
                data["keys"][record.key_id] = orjson.loads(record.to_json())

        await self._write(change)

    async def put_tenant(self, tenant: str, overrides: Mapping[str, Any]) -> None:
        def change(data: dict[str, Any]) -> None:
            if overrides:
                data["tenants"][tenant] = dict(overrides)
            else:
                data["tenants"].pop(tenant, None)

        await self._write(change)

    async def close(self) -> None:
        return None


def open_directory_store(redis_url: str, *, prefix: str = "atp:", path: str = "") -> DirectoryStore:
    """Redis when configured, else the local file."""
    if redis_url:
        return RedisDirectoryStore(redis_url, prefix=prefix)
    return FileDirectoryStore(path or "var/tenants.json")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as the request path sees it: who it authenticates (never the key itself)."""

    tenant: str
    role: Role
    name: str
    key_id: str
    # Unix s after which the key is refused; 0: never. Checked against the clock at every authentication,
    # not only when the directory reloads.
    expires_at: float = 0.0


# End users whose combined limits are kept compiled; past that the table starts afresh (a user's counters
# live in the store, so only the compilation is lost).
_MAX_USER_LIMITS = 10_000


class Directory:
    """The configuration merged with the store's state, precomputed for the request path: key digests
    to principals, each tenant's effective settings and compiled limits, and the effective AtpConfig."""

    def __init__(self, config: AtpConfig, state: DirectoryState | None = None):
        state = state or DirectoryState()
        self.version = state.version
        self.state = state
        revoked = {r.digest for r in state.keys.values() if r.revoked_at is not None}
        keys: dict[str, KeyInfo] = {}
        file_limits: dict[str, dict[str, float]] = {}
        # The configuration file's model lists and expiry of each key, by id, overridden by its record's.
        file_models: dict[str, tuple[list[str], list[str]]] = {}
        expiry: dict[str, float] = {}
        for tenant, tenant_config in config.tenants.items():
            for key in tenant_config.api_keys:
                digest = key.hash.removeprefix("sha256:")
                key_id = config_key_id(digest)
                file_limits[key_id] = key.limits
                file_models[key_id] = (key.allowed_models, key.denied_models)
                expiry[key_id] = key.expires_ts or 0.0
                if digest not in revoked:
                    keys[digest] = KeyInfo(tenant, key.role, key.name, key_id)
        for record in state.keys.values():
            if record.expires_at is not None:
                expiry[record.key_id] = record.expires_at
            if record.revoked_at is None and record.source == "admin":
                keys[record.digest] = KeyInfo(record.tenant, record.role, record.name, record.key_id)
        self.keys = {
            d: KeyInfo(k.tenant, k.role, k.name, k.key_id, e) if (e := expiry.get(k.key_id, 0.0)) else k
            for d, k in keys.items()
        }
        self.key_expiry = {k: e for k, e in expiry.items() if e}
        # Every key id this directory knows, live, revoked or expired: an id outside it is news.
        self.key_ids = frozenset(expiry) | {r.key_id for r in state.keys.values()}
        self.key_models = _key_models(file_models, state.keys.values())
        self.key_settings = key_settings = _key_settings(file_limits, state.keys.values())
        self.tenants = tenants = _merged_tenants(config, state)
        self.limits: dict[str, TenantLimits] = {}
        for tenant, tenant_config in tenants.items():
            compiled = compile_limits(tenant, tenant_config)
            if compiled.checks:
                self.limits[tenant] = compiled
        # A live key with limits of its own: its tenant's checks followed by the key's, one admission.
        self.key_limits: dict[str, TenantLimits] = {}
        for info in keys.values():
            own = key_settings.get(info.key_id)
            if own:
                scope = self.limits.get(info.tenant) or TenantLimits(info.tenant, (), (), ())
                self.key_limits[info.key_id] = with_key_limits(scope, info.key_id, own)
        self.user_budgets = {
            t: (c.user_daily_budget_usd, c.user_monthly_budget_usd)
            for t, c in tenants.items()
            if c.user_daily_budget_usd is not None or c.user_monthly_budget_usd is not None
        }
        self._user_limits: dict[tuple[str, str, str], TenantLimits] = {}
        self.config = config if not state.tenants else config.model_copy(update={"tenants": tenants})

    def limits_for(self, tenant: str, key_id: str = "", user: str = "") -> TenantLimits | None:
        """What a request of `tenant` made with key `key_id` (may be empty) for end user `user` (may be
        empty) is checked against; None when nothing limits it. A key id of another tenant is ignored: the
        tenant's limits alone apply. A tenant's user budgets hold only requests that name their user."""
        limits = self.limits.get(tenant)
        if key_id:
            combined = self.key_limits.get(key_id)
            if combined is not None and combined.tenant == tenant:
                limits = combined
            else:
                key_id = ""
        if not user:
            return limits
        budgets = self.user_budgets.get(tenant)
        if budgets is None:
            return limits
        cached = self._user_limits.get((tenant, key_id, user))
        if cached is None:
            if len(self._user_limits) >= _MAX_USER_LIMITS:
                self._user_limits.clear()
            scope = limits or TenantLimits(tenant, (), (), ())
            cached = self._user_limits[(tenant, key_id, user)] = with_user_budgets(scope, user, *budgets)
        return cached

    def models_for(self, key_id: str) -> KeyModels | None:
        """The key's own model lists, None when it has none (most keys: one dict lookup)."""
        return self.key_models.get(key_id)

    def config_keys(self, config: AtpConfig) -> list[KeyRecord]:
        """The configuration file's keys as records (for listing)."""
        return [
            KeyRecord(
                config_key_id(k.hash.removeprefix("sha256:")),
                k.hash.removeprefix("sha256:"),
                t,
                k.role,
                k.name,
                source="config",
            )
            for t, tc in config.tenants.items()
            for k in tc.api_keys
        ]


def _key_settings(
    file_limits: Mapping[str, Mapping[str, float]], records: Iterable[KeyRecord]
) -> dict[str, dict[str, float]]:
    """Every known key's own limits (revoked ones too, for listing), by key id; keys without are absent."""
    key_settings = {k: dict(v) for k, v in file_limits.items() if v}
    for record in records:
        merged = effective_key_limits(file_limits.get(record.key_id, {}), record.limits)
        if merged:
            key_settings[record.key_id] = merged
        else:
            key_settings.pop(record.key_id, None)
    return key_settings


def _merged_tenants(config: AtpConfig, state: DirectoryState) -> dict[str, TenantConfig]:
    """Each tenant's settings: the configuration file's with the admin API's overrides."""
    tenants = dict(config.tenants)
    for tenant, overrides in state.tenants.items():
        base = tenants.get(tenant, TenantConfig())
        merged = {**base.model_dump(), **{k: v for k, v in overrides.items() if k in TENANT_FIELDS}}
        tenants[tenant] = TenantConfig.model_validate(merged)
    return tenants


def _key_models(
    file_models: Mapping[str, tuple[list[str], list[str]]], records: Iterable[KeyRecord]
) -> dict[str, KeyModels]:
    """Each key's model lists: the configuration file's, replaced by a record's where it sets them."""
    lists = {k: (list(a), list(d)) for k, (a, d) in file_models.items()}
    for record in records:
        allowed, denied = lists.get(record.key_id, ([], []))
        if record.allowed_models is not None:
            allowed = record.allowed_models
        if record.denied_models is not None:
            denied = record.denied_models
        lists[record.key_id] = (allowed, denied)
    return {k: KeyModels(frozenset(a) or None, frozenset(d)) for k, (a, d) in lists.items() if a or d}


class DirectoryFollower:
    """Keeps `directory` current: polls the store's version every `poll_s` (one small read) and reloads on
    change, so a revocation reaches every replica within poll_s plus one load. While the store is
    unreachable the last directory stays in force and `healthy` is False."""

    def __init__(
        self,
        config: AtpConfig,
        store: DirectoryStore,
        *,
        poll_s: float = 0.25,
        timeout_s: float = 2.0,
        on_change: Callable[[Directory], None] | None = None,
    ):
        self._config = config
        self.store = store
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._on_change = on_change
        self.directory = Directory(config)
        self.healthy = True
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[bool] | None = None
        self._closing = False

    async def start(self) -> None:
        """Load once (bounded), then follow in the background."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="directory-follow")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await cancel_and_wait(self._catching_up)
        await self.store.close()

    @property
    def config(self) -> AtpConfig:
        """The configuration file's content (without the store's overrides)."""
        return self._config

    def set_config(self, config: AtpConfig) -> None:
        """A new configuration file: rebuild on the current state."""
        self._config = config
        self._publish(Directory(config, self.directory.state))

    def _publish(self, directory: Directory) -> None:
        self.directory = directory
        if self._on_change is not None:
            try:
                self._on_change(directory)
            except Exception:
                log.exception("directory change handler failed")

    async def refresh(self) -> bool:
        """Reload when the store's version changed; True when it did. Errors mark the follower unhealthy."""
        try:
            version = await asyncio.wait_for(self.store.version(), self._timeout_s)
            if version == self.directory.version:
                self._healthy(True)
                return False
            state = await asyncio.wait_for(self.store.load(), self._timeout_s)
        except Exception as exc:  # a store outage must not stop authentication with the last state
            self._healthy(False, f"{type(exc).__name__}: {exc}")
            return False
        self._healthy(True)
        self._publish(Directory(self._config, state))
        return True

    async def catch_up(self) -> None:
        """Reload now rather than at the next poll, for a caller that knows the store has moved on (it
        wrote it, or holds a key id this replica has not seen). Concurrent callers share one read, and a
        caller that gives up does not cancel it for the others."""
        pending = self._catching_up
        if pending is None or pending.done():
            pending = self._catching_up = asyncio.create_task(self.refresh(), name="directory-catch-up")
        await asyncio.shield(pending)

    def _healthy(self, healthy: bool, error: str = "") -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("directory store reachable again", extra={"store": self.store.name})
            else:
                log.error("directory store unreachable", extra={"store": self.store.name, "error": error})
        self.healthy = healthy
        if error:
            self.last_error = error

    async def _follow(self) -> None:
        # The flag, not only the cancel: on Python 3.11 a cancel that lands as one of the Redis client's
        # internal wait_for calls completes can be swallowed, and a `while True` would then poll on and
        # close() would wait for it forever.
        while not self._closing:
            await asyncio.sleep(self._poll_s)
            await self.refresh()


def follow_directory(
    settings: DirectorySettings,
    config: AtpConfig,
    *,
    on_change: Callable[[Directory], None] | None = None,
) -> DirectoryFollower:
    """The directory follower every service builds the same way: the store the settings name (Redis when
    configured, else the file), polled every directory_poll_s. Not started: the caller owns its life."""
    store = open_directory_store(
        settings.redis_url, prefix=settings.redis_prefix, path=settings.directory_path
    )
    return DirectoryFollower(config, store, poll_s=settings.directory_poll_s, on_change=on_change)
