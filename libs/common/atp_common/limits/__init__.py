"""Rate limits, token reservations and budgets shared by every replica (Redis) or kept in process."""

from atp_common.limits.backends import MemoryBackend, RedisBackend, StoreUnavailable
from atp_common.limits.limiter import Limiter, Ticket, open_limiter
from atp_common.limits.rules import Check, TenantLimits, compile_limits, with_key_limits

__all__ = [
    "Check",
    "Limiter",
    "MemoryBackend",
    "RedisBackend",
    "StoreUnavailable",
    "TenantLimits",
    "Ticket",
    "compile_limits",
    "open_limiter",
    "with_key_limits",
]
