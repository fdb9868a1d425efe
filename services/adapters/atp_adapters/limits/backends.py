"""Where counters live: Redis (one atomic Lua script per admission or lease, shared by every replica) or this process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "LEASE_FACTOR",
    "Admission",
    "Backend",
    "MemoryBackend",
    "RedisBackend",
    "Settlement",
    "StoreUnavailable",
]


class StoreUnavailable(Exception):
    """The counter store could not be reached in time; the limiter applies its fail mode."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one admission: admitted or the index of the (first) refusing counter, every
    counter's value (after the increment when admitted) and milliseconds until it resets, and whether the
    lease asked for was granted too (then each counter's value includes its lease)."""

    admitted: bool
    refused_by: int
    used: tuple[int, ...]
    ttl_ms: tuple[int, ...]
    leased: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """Corrections to counters after the real usage is known (actual minus reserved, per key)."""

    keys: tuple[str, ...]
    deltas: tuple[int, ...]


class Backend(Protocol):
    """A counter store. `admit` checks every counter and increments all or none, atomically; with `wants`,
    it also adds a lease of `wants[i]` to every counter when each keeps at least LEASE_FACTOR times its
    lease free after it (all leases or none). `leases` says whether the store grants them at all."""

    name: str
    leases: bool

    async def admit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        amounts: Sequence[int],
        windows_ms: Sequence[int],
        elastic: Sequence[bool],
        wants: Sequence[int] | None = None,
    ) -> Admission: ...

    async def settle(self, settlements: Sequence[Settlement]) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# All checks, then all increments, in one script: Redis runs it atomically, so concurrent admissions on
# any number of replicas see each other's increments and a limit is never passed by a race. The counters
# may belong to two scopes (a tenant and its API key); a refusal by either increments none.
# ARGV per key: limit, amount, window_ms, elastic (1: an empty window admits even an amount above the limit,
# so one request bigger than a token window is not refused forever), want (a lease to add, 0 for none);
# then the lease factor. A lease is granted only when every counter keeps `factor` times its lease free
# after the request and the lease, so near a limit admission goes back to one request at a time.
# A refusal still reads every counter, so the x-ratelimit-* values of the other scope are exact too.
_ADMIT_LUA = """
local n = #KEYS
local used = {}
local ttl = {}
local refused = 0
local factor = tonumber(ARGV[n * 5 + 1])
local lease = 0
for i = 1, n do
  local base = (i - 1) * 5
  local limit = tonumber(ARGV[base + 1])
  local amount = tonumber(ARGV[base + 2])
  local want = tonumber(ARGV[base + 5])
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local t = redis.call('PTTL', KEYS[i])
  if t < 0 then t = tonumber(ARGV[base + 3]) end
  used[i] = cur
  ttl[i] = t
  if refused == 0 and cur + amount > limit and not (ARGV[base + 4] == '1' and cur <= 0) then
    refused = i
  end
  if want > 0 and lease == 0 then lease = 1 end
  if cur + amount + want * (factor + 1) > limit then lease = -1 end
end
if refused > 0 then
  local out = {0, refused, 0}
  for j = 1, n do out[#out + 1] = used[j]; out[#out + 1] = ttl[j] end
  return out
end
if lease < 0 then lease = 0 end
local out = {1, 0, lease}
for i = 1, n do
  local base = (i - 1) * 5
  local amount = tonumber(ARGV[base + 2]) + lease * tonumber(ARGV[base + 5])
  local v = redis.call('INCRBY', KEYS[i], amount)
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[base + 3]))
  end
  out[#out + 1] = v
  out[#out + 1] = ttl[i]
end
return out
"""

# A settlement only corrects a counter that still exists (an expired window has nothing to correct) and
# never takes it below zero.
_SETTLE_LUA = """
for i = 1, #KEYS do
  local delta = tonumber(ARGV[i])
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], delta)
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""


# A lease is granted only when every counter keeps this many times the lease free beyond it.
LEASE_FACTOR = 4


def _admission(flat: Sequence[int]) -> Admission:
    pairs = [int(v) for v in flat[3:]]
    return Admission(bool(flat[0]), int(flat[1]) - 1, tuple(pairs[0::2]), tuple(pairs[1::2]), bool(flat[2]))


class RedisBackend:
    """Counters in Redis through redis.asyncio: a pooled client with socket timeouts, one EVALSHA per
    admission or lease and one pipelined round trip per batch of settlements."""

    name = "redis"
    leases = True

    def __init__(self, url: str, *, timeout_s: float = 0.25, max_connections: int = 64):
        import redis.asyncio as redis

        # A blocking pool: when every connection is busy, an admission waits up to the timeout for one
        # instead of failing at once (the plain pool raises "Too many connections" under a burst).
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            # Connecting gets longer than a call: a burst on a cold pool opens many connections at once.
            socket_connect_timeout=max(timeout_s, 1.0),
            health_check_interval=30,
        )
        self._redis = redis.Redis.from_pool(pool)
        self._admit = self._redis.register_script(_ADMIT_LUA)
        self._settle = self._redis.register_script(_SETTLE_LUA)

    @property
    def client(self):  # type: ignore[no-untyped-def]
        """The underlying client (the directory store shares its pool)."""
        return self._redis

    async def admit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        amounts: Sequence[int],
        windows_ms: Sequence[int],
        elastic: Sequence[bool],
        wants: Sequence[int] | None = None,
    ) -> Admission:
        args: list[int | str] = []
        for i, (limit, amount, window, grow) in enumerate(
            zip(limits, amounts, windows_ms, elastic, strict=True)
        ):
            args += (limit, amount, window, "1" if grow else "0", wants[i] if wants else 0)
        args.append(LEASE_FACTOR)
        try:
            flat = await self._admit(keys=list(keys), args=args)
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, ResponseError, OSError
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return _admission(flat)

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        try:
            if len(settlements) == 1:
                # One tenant (the common case): one EVALSHA, without a pipeline's own checks and buffers.
                await self._settle(keys=list(settlements[0].keys), args=list(settlements[0].deltas))
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in settlements:
                    await self._settle(keys=list(item.keys), args=list(item.deltas), client=pipe)
                await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except Exception as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryBackend:
    """The same counters in this process (no Redis configured): exact for one replica, per replica when
    several run. Admission has no await inside, so it is atomic under asyncio, and costs no round trip:
    it grants no leases."""

    name = "memory"
    leases = False
    # Expired counters are swept when the table grows past this, keeping memory bounded by live windows.
    _SWEEP_AT = 10_000

    def __init__(self) -> None:
        self._counters: dict[str, list[float]] = {}  # key -> [value, expires_at (monotonic s)]

    def _get(self, key: str, now: float) -> list[float] | None:
        entry = self._counters.get(key)
        if entry is not None and entry[1] <= now:
            del self._counters[key]
            return None
        return entry

    async def admit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        amounts: Sequence[int],
        windows_ms: Sequence[int],
        elastic: Sequence[bool],
        wants: Sequence[int] | None = None,
    ) -> Admission:
        now = time.monotonic()
        entries = [self._get(k, now) for k in keys]
        used = [int(e[0]) if e else 0 for e in entries]
        ttl = [int((e[1] - now) * 1000) if e else w for e, w in zip(entries, windows_ms, strict=True)]
        for i, (limit, amount) in enumerate(zip(limits, amounts, strict=True)):
            if used[i] + amount > limit and not (elastic[i] and used[i] <= 0):
                return Admission(False, i, tuple(used), tuple(ttl))
        if len(self._counters) > self._SWEEP_AT:
            self._sweep(now)
        for i, key in enumerate(keys):
            entry = entries[i]
            if entry is None:
                entry = self._counters[key] = [0, now + windows_ms[i] / 1000]
            entry[0] += amounts[i]
            used[i] = int(entry[0])
        return Admission(True, -1, tuple(used), tuple(ttl))

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        now = time.monotonic()
        for item in settlements:
            for key, delta in zip(item.keys, item.deltas, strict=True):
                entry = self._get(key, now)
                if entry is not None and delta:
                    entry[0] = max(0, entry[0] + delta)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()

    def _sweep(self, now: float) -> None:
        for key in [k for k, e in self._counters.items() if e[1] <= now]:
            del self._counters[key]
