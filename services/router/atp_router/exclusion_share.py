"""Circuit reports shared between router replicas through Redis, so an exclusion reported to any replica
reaches every replica's snapshot (and the adapters and Route callers connected to it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["ExclusionShare", "RedisExclusionShare"]

# One script per report, so the sequence check and the write are atomic across router replicas: a report
# replaces its replica's previous one only when its sequence is higher (sequences are uint64 sent as 20
# zero-padded digits, because Lua numbers are doubles and would round wall-clock nanoseconds; padded
# digits compare as strings). Before the write, reports past their forget time are dropped; after it, the
# soonest-forgettable are dropped beyond max_replicas; the structures expire with the last report, so an
# abandoned prefix leaves nothing behind. The version counter never expires (a reset could repeat a value
# a replica already holds, which would hide a change).
# KEYS: reports (hash replica -> report bytes), sequences (hash replica -> 20 digits),
#       forget (sorted set replica -> ms after which the report may be forgotten), version (counter)
# ARGV: replica, sequence, report bytes, forget_at_ms, now_ms, max_replicas
_WRITE_LUA = """
local function forget(replica)
  redis.call('HDEL', KEYS[1], replica)
  redis.call('HDEL', KEYS[2], replica)
  redis.call('ZREM', KEYS[3], replica)
end
for _, replica in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])) do
  forget(replica)
end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if previous and previous >= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[3], excess)
  for i = 1, #popped, 2 do forget(popped[i]) end
end
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if last[2] then
  for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], last[2]) end
end
redis.call('INCR', KEYS[4])
return 1
"""


class ExclusionShare(Protocol):
    """Where router replicas share the latest report of each adapters replica. Reports are opaque bytes
    here (the serialized, already-normalised ReportExclusionsRequest); every call may raise, and the
    caller bounds each with its own deadline."""

    name: str

    async def version(self) -> str | None:
        """The change counter; None when nothing was ever written (or the store lost it)."""
        ...

    async def write(
        self,
        replica_id: str,
        sequence: int,
        report: bytes,
        *,
        forget_at: float,
        now: float,
        max_replicas: int,
    ) -> bool:
        """Store the report unless one with an equal or higher sequence is stored; True when stored."""
        ...

    async def load(self) -> tuple[str | None, Sequence[bytes]]:
        """The version and every stored report, read consistently."""
        ...

    async def close(self) -> None: ...


class RedisExclusionShare:
    """Reports in two hashes and a sorted set under the router's Redis prefix, with a version counter
    bumped by every write, which replicas poll (one GET) as the key directory's followers do."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "atp:", timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries inside the client: a failed call falls back to local reports at once and the next poll
        # (0.25 s later) is the retry, so every call ends within its socket timeouts.
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=4,
            retry=Retry(NoBackoff(), 0),
        )
        self._write = self._redis.register_script(_WRITE_LUA)
        self._reports = f"{prefix}circuits:reports"
        self._sequences = f"{prefix}circuits:sequences"
        self._forget = f"{prefix}circuits:forget"
        self._version = f"{prefix}circuits:version"

    async def version(self) -> str | None:
        value = await self._redis.get(self._version)
        return value.decode() if isinstance(value, bytes) else value

    async def write(
        self,
        replica_id: str,
        sequence: int,
        report: bytes,
        *,
        forget_at: float,
        now: float,
        max_replicas: int,
    ) -> bool:
        stored = await self._write(
            keys=[self._reports, self._sequences, self._forget, self._version],
            args=[
                replica_id,
                f"{sequence:020d}",
                report,
                int(forget_at * 1000),
                int(now * 1000),
                max_replicas,
            ],
        )
        return bool(stored)

    async def load(self) -> tuple[str | None, Sequence[bytes]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._version)
            pipe.hvals(self._reports)
            version, reports = await pipe.execute()
        return (version.decode() if isinstance(version, bytes) else version), reports

    async def close(self) -> None:
        await self._redis.aclose()
