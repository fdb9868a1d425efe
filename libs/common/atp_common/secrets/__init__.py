"""Secret references (`env:`, `file:`, `vault:`) resolved to live values that follow rotation."""

from atp_common.secrets.references import Reference, SecretDenied, SecretError, parse_reference
from atp_common.secrets.resolver import SecretRef, SecretResolver, read_static, resolve_static
from atp_common.secrets.settings import VaultSettings
from atp_common.secrets.vault import VaultBackend

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
