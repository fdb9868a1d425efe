"""API key records as the directory stores them: digests, per-key limits, model lists and expiry."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from atp_common.config import KEY_POLICY_FIELDS, Role, upgrade_role

__all__ = ["KEY_PREFIX", "KeyModels", "KeyRecord", "config_key_id", "effective_key_limits", "new_api_key"]

log = logging.getLogger("atp.limits.directory")

KEY_PREFIX = "sk-atp-"


def new_api_key() -> tuple[str, str]:
    """A fresh key and its digest (hex). The key is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as stored: its digest only. `source` is "admin" for created keys and "config" for a
    revocation of, or a limit change to, a key from the configuration file.

    `limits` holds the key's own rate limits and budgets (KEY_POLICY_FIELDS names): all of them for a
    created key; for a configuration-file key, the changes made through the admin API on top of the file's
    values, where None removes a limit the file sets. `allowed_models` / `denied_models` (None: the file's,
    or none) narrow the tenant's lists; `expires_at` (Unix s; None: the file's, 0: never) ends the key.
    """

    key_id: str
    digest: str
    tenant: str
    role: Role = "user"
    name: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None
    source: str = "admin"
    # The key this one replaced (rotation), for the audit trail.
    rotated_from: str = ""
    limits: Mapping[str, float | None] = field(default_factory=dict)
    allowed_models: list[str] | None = None
    denied_models: list[str] | None = None
    expires_at: float | None = None

    def to_json(self) -> bytes:
        return orjson.dumps({f: getattr(self, f) for f in self.__slots__}, default=dict)

    @classmethod
    def from_json(cls, raw: bytes | str) -> KeyRecord:
        data = orjson.loads(raw)
        record = {k: v for k, v in data.items() if k in cls.__slots__}
        # A key stored before scoped administration may say `admin`: it keeps working as `operator`.
        if "role" in record:
            record["role"] = upgrade_role(
                record["role"], f"{record.get('name', '')!r} ({record.get('key_id')})"
            )
        return cls(**record)


def config_key_id(digest: str) -> str:
    """The id under which a configuration-file key is listed and revoked."""
    return "cfg_" + digest[:16]


def effective_key_limits(base: Mapping[str, float], changes: Mapping[str, float | None]) -> dict[str, float]:
    """A key's limits: the configuration file's `base` with the admin API's `changes` (None removes one)."""
    merged = {**base, **changes}
    return {f: v for f in KEY_POLICY_FIELDS if (v := merged.get(f)) is not None}


@dataclass(frozen=True, slots=True)
class KeyModels:
    """A key's own model lists: `allowed` None when it has no allow-list."""

    allowed: frozenset[str] | None
    denied: frozenset[str]
