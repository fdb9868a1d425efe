"""Resolving secret references (`env:NAME`, `file:/path`) from the configuration to their values."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from atp_common.errors import ConfigError

SecretResolver = Callable[[str], str]


def resolve_secret(ref: str) -> str:
    """The value behind a secret reference; an empty reference means no secret.

    `env:NAME` reads an environment variable, `file:/path` a file (one trailing newline stripped, as
    editors and `echo` add one). `vault:` references need a resolver that knows Vault: pass one to
    `build_provider`. A bare value is refused so that keys never sit in the configuration file.
    """
    if not ref:
        return ""
    scheme, sep, rest = ref.partition(":")
    if not sep or not rest:
        raise ConfigError("a secret must be a reference: env:NAME, file:/path or vault:path#key")
    if scheme == "env":
        value = os.environ.get(rest)
        if value is None:
            raise ConfigError(f"secret {ref}: environment variable {rest} is not set")
        return value
    if scheme == "file":
        try:
            text = Path(rest).read_text()
        except OSError as exc:
            raise ConfigError(f"secret {ref}: cannot read {rest}: {exc.strerror}") from exc
        return text.removesuffix("\n").removesuffix("\r")
    if scheme == "vault":
        raise ConfigError(f"secret {ref}: no Vault resolver is configured")
    raise ConfigError(f"secret {ref}: unknown scheme {scheme!r} (use env:, file: or vault:)")
