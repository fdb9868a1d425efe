"""Secret references (`env:`, `file:`, `vault:`) resolved to live values that follow rotation."""

from atp_adapters.secrets.references import Reference, SecretDenied, SecretError, parse_reference
from atp_adapters.secrets.resolver import SecretRef, SecretResolver, read_static, resolve_static
from atp_adapters.secrets.settings import VaultSettings
from atp_adapters.secrets.vault import VaultBackend

__all__ = [
    "Reference",
    "SecretDenied",
    "SecretError",
    "SecretRef",
    "SecretResolver",
    "VaultBackend",
    "VaultSettings",
    "parse_reference",
    "read_static",
    "resolve_static",
]
