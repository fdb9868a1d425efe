"""API keys to tenants: the key store the gateway authenticates every request against."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from atp_common.config import AtpConfig, Role
from atp_common.errors import Unauthenticated
from atp_common.limits.directory import Directory, config_key_id

__all__ = ["KeyStore", "Principal", "api_key_from_headers"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant the key belongs to, its role, the key's name and id (never the key).

    The key id goes to the adapters with every request, which apply the key's own limits by it.
    """

    tenant: str
    role: Role
    key_name: str
    key_id: str = ""
    # Unix s after which the key is refused (0: never).
    expires_at: float = 0.0


_MISSING_KEY = (
    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or an 'api-key' header)."
)


class KeyStore:
    """SHA-256 digests of API keys mapped to principals, built once per configuration.

    Dynamic keys: the gateway follows the tenant directory (keys created, rotated and revoked through the
    admin API) and swaps in a new KeyStore built by `from_directory` on every change, so a lookup stays
    one hash and one dict access.
    """

    def __init__(self, principals_by_digest: dict[str, Principal]):
        self._by_digest = principals_by_digest

    @classmethod
    def from_config(cls, config: AtpConfig) -> KeyStore:
        """Every tenant's keys from the configuration."""
        by_digest: dict[str, Principal] = {}
        for tenant, tenant_config in config.tenants.items():
            for key in tenant_config.api_keys:
                digest = key.hash.removeprefix("sha256:")
                by_digest[digest] = Principal(
                    tenant, key.role, key.name, config_key_id(digest), key.expires_ts or 0.0
                )
        return cls(by_digest)

    @classmethod
    def from_directory(cls, directory: Directory) -> KeyStore:
        """The configuration's keys and the admin API's, minus revoked ones."""
        return cls(
            {
                d: Principal(k.tenant, k.role, k.name, k.key_id, k.expires_at)
                for d, k in directory.keys.items()
            }
        )

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, api_key: str) -> Principal | None:
        """The principal of `api_key`, or None (unknown, or past its expiry: read against the clock here,
        so an expired key is refused at once, whatever the directory's reload delay). Only the digest is
        compared or kept."""
        principal = self._by_digest.get(hashlib.sha256(api_key.encode()).hexdigest())
        if principal is not None and principal.expires_at and time.time() >= principal.expires_at:
            return None
        return principal

    def authenticate(self, api_key: str | None) -> Principal:
        """The principal of `api_key`; Unauthenticated when it is missing or unknown."""
        if not api_key:
            raise Unauthenticated(_MISSING_KEY)
        principal = self.lookup(api_key)
        if principal is None:
            # Never echo the key, not even a prefix: error bodies end up in client logs.
            raise Unauthenticated("Incorrect API key provided.")
        return principal


def api_key_from_headers(authorization: bytes | None, api_key: bytes | None) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from an `api-key` / `x-api-key` header."""
    if authorization:
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip().decode("latin-1")
        return None
    if api_key:
        return api_key.strip().decode("latin-1")
    return None
