"""Parsing secret references (`env:NAME`, `file:/path`, `vault:path#key`) from the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atp_common.errors import ConfigError

Scheme = Literal["env", "file", "vault"]
_SCHEMES: frozenset[str] = frozenset(("env", "file", "vault"))


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. `target` is the variable name, the file path or the Vault KV path; `key` is
    the field inside the Vault secret (empty for the other schemes)."""

    scheme: Scheme
    target: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}" + (f"#{self.key}" if self.key else "")


def parse_reference(ref: str) -> Reference:
    """The parsed form of `ref`; ConfigError for a bare value or an unknown scheme.

    A bare value is refused so that keys never sit in the configuration file.
    """
    scheme, sep, rest = ref.partition(":")
    if not sep or not rest:
        raise ConfigError("a secret must be a reference: env:NAME, file:/path or vault:path#key")
    if scheme not in _SCHEMES:
        raise ConfigError(f"secret {ref}: unknown scheme {scheme!r} (use env:, file: or vault:)")
    if scheme == "vault":
        path, _, key = rest.partition("#")
        path = path.strip("/")
        if not path or not key:
            raise ConfigError(f"secret {ref}: a Vault reference is vault:path#key (KV v2 path and field)")
        return Reference("vault", path, key)
    return Reference(scheme, rest)  # type: ignore[arg-type]


class SecretError(ConfigError):
    """A secret could not be read (missing variable or file, Vault unreachable, denied or missing)."""


class SecretDenied(SecretError):
    """Vault refused the token (expired or revoked): logging in again may help."""
