"""Admission against tenant, key and user limits: rate windows, token reservations and budgets, on Redis
or in process."""

from atp_adapters.limits.backends import MemoryBackend, RedisBackend, StoreUnavailable
from atp_adapters.limits.limiter import Limiter, Ticket, open_limiter

__all__ = ["Limiter", "MemoryBackend", "RedisBackend", "StoreUnavailable", "Ticket", "open_limiter"]
