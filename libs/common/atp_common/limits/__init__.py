"""Limit rules and the key directory: what every service reads about tenants, keys and their limits."""

from atp_common.limits.rules import Check, TenantLimits, compile_limits, with_key_limits

__all__ = ["Check", "TenantLimits", "compile_limits", "with_key_limits"]
