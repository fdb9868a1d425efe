"""Resolving a provider's secret reference without Vault (`env:NAME`, `file:/path`), synchronously."""

from __future__ import annotations

from collections.abc import Callable

from atp_adapters.secrets import resolve_static

# A synchronous resolver, for building one provider by hand (tests, tools). Servers use
# atp_adapters.secrets.SecretResolver, which also knows Vault and follows rotation.
SyncSecretResolver = Callable[[str], str]


def resolve_secret(ref: str) -> str:
    """The value behind a secret reference; an empty reference means no secret.

    `env:NAME` reads an environment variable, `file:/path` a file (one trailing newline stripped, as
    editors and `echo` add one). `vault:` references need atp_adapters.secrets.SecretResolver with a Vault
    backend. A bare value is refused so that keys never sit in the configuration file.
    """
    return resolve_static(ref)
