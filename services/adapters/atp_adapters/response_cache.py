"""Exact-match response cache: whole replies keyed by tenant and the request's canonical form."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from atp.adapters.v1 import adapters_pb2
from atp_adapters import semantic_cache
from atp_adapters.semantic_cache import SemanticIndex, SemanticQuery
from atp_common.cache_entries import canonical_key, canonical_request, replay
from atp_common.config import AtpConfig, CacheConfig

__all__ = [
    "MODES",
    "SEMANTIC_HIT",
    "CachePlan",
    "MemoryStore",
    "RedisStore",
    "ResponseCache",
    "canonical_key",
    "replay",
]

log = logging.getLogger("atp.adapters.cache")

LOOKUPS = Counter("atp_adapters_cache_lookups_total", "Response cache lookups, by outcome.", ["outcome"])
_HIT, _MISS, _ERROR = LOOKUPS.labels("hit"), LOOKUPS.labels("miss"), LOOKUPS.labels("error")
_SEMANTIC_HIT = LOOKUPS.labels("semantic_hit")
MODES = frozenset(("use", "refresh", "no-store"))
# The x-atp-cache value of a reply served for a paraphrase (an exact match is "hit").
SEMANTIC_HIT = "semantic-hit"


class CacheStore(Protocol):
    """Where replies live: Redis (shared by replicas) or this process."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """A bounded LRU in this process: at most `max_entries` replies and `max_bytes` bytes."""

    def __init__(self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_s, value)
        self._bytes += len(value)
        while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


class RedisStore:
    """Replies in Redis under `prefix`, each with its TTL; every call bounded by `timeout_s`."""

    def __init__(self, url: str, prefix: str, timeout_s: float = 0.25) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(self._prefix + key)
        return value.encode() if isinstance(value, str) else value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._client.set(self._prefix + key, value, px=max(int(ttl_s * 1000), 1))

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(slots=True)
class CachePlan:
    """What the cache does for one request: `read` it, and store the reply for `ttl_s` when `store`.

    On a route with semantic matching, `question` is the last user turn and `bucket` the id of everything
    else; `query` is their embedding, made on an exact miss (or when storing) and kept for the store.
    """

    key: str
    read: bool
    store: bool
    ttl_s: float
    mode: str
    tenant: str = ""
    question: str = ""
    bucket: int = 0
    threshold: float = 0.0
    query: SemanticQuery | None = None
    outcome: str = "hit"


class ResponseCache:
    """Decides per request whether the cache applies, and reads and writes whole replies.

    A route opts in with `cache: {ttl_s}`, a request with x-atp-cache (GenerateRequest.cache). Replies of
    sampled requests (temperature above 0, or the provider's default) are stored only on routes that
    say `sampled: true`. A store that fails is a miss, never a failed request.
    """

    def __init__(
        self,
        store: CacheStore,
        config: AtpConfig,
        default_ttl_s: float,
        max_reply_bytes: int,
        index: SemanticIndex | None = None,
    ):
        self._store = store
        self._default_ttl_s = default_ttl_s
        self._max_reply_bytes = max_reply_bytes
        self._index = index or SemanticIndex(2048, 32)
        self.configure(config)

    def configure(self, config: AtpConfig) -> None:
        """Take the routes' cache settings (at start-up and when the configuration changes)."""
        self._routes: Mapping[str, CacheConfig] = {
            name: route.cache for name, route in config.routes.items() if route.cache is not None
        }
        self._default_route = config.default_route
        if any(route.semantic is not None for route in self._routes.values()):
            semantic_cache.warm()

    def plan(self, request: adapters_pb2.GenerateRequest, tenant: str) -> CachePlan | None:
        """None when neither the route nor the request asks for the cache (no work at all)."""
        mode = request.cache
        route = self._routes.get(request.model or self._default_route)
        if route is None and not mode:
            return None
        sampled_ok = route is not None and route.sampled
        params = request.params
        deterministic = params.HasField("temperature") and params.temperature == 0.0
        store = mode != "no-store" and (deterministic or sampled_ok)
        read = mode != "refresh"
        ttl = route.ttl_s if route is not None else self._default_ttl_s
        plan = CachePlan(canonical_key(request, tenant), read, store, ttl, mode or "use", tenant)
        if route is not None and route.semantic is not None:
            _semantic_part(plan, request, route.semantic.threshold)
        return plan

    async def get(self, plan: CachePlan) -> adapters_pb2.GenerateResponse | None:
        try:
            raw = await self._store.get(plan.key)
            if raw is None and plan.question:
                raw = await self._nearest(plan)
        except Exception as exc:  # a cache that is down is a cache that misses
            _ERROR.inc()
            log.warning("response cache read failed: %s", exc)
            return None
        if raw is None:
            _MISS.inc()
            return None
        (_SEMANTIC_HIT if plan.outcome == SEMANTIC_HIT else _HIT).inc()
        reply: adapters_pb2.GenerateResponse = adapters_pb2.GenerateResponse.FromString(raw)
        return reply

    async def _nearest(self, plan: CachePlan) -> bytes | None:
        """The reply stored for the most similar earlier question, if one is similar enough."""
        plan.query = semantic_cache.make_query(plan.question, plan.bucket, plan.threshold)
        key = self._index.nearest(plan.tenant, plan.query) if plan.query is not None else None
        if key is None:
            return None
        raw = await self._store.get(key)
        if raw is None:  # expired or evicted from the store: the index forgets it too
            self._index.remove(plan.tenant, key)
            return None
        plan.outcome = SEMANTIC_HIT
        return raw

    async def put(self, plan: CachePlan, reply: adapters_pb2.GenerateResponse) -> int:
        """Store a whole, successful reply (and index its question on a semantic route); returns the Unix
        time in ms until which it is stored, which the stored header carries too (0: not stored)."""
        expires_at_ms = int((time.time() + plan.ttl_s) * 1000)
        reply.header.cache_expires_at_ms = expires_at_ms
        raw = reply.SerializeToString()
        if len(raw) > self._max_reply_bytes:
            return 0
        try:
            await self._store.put(plan.key, raw, plan.ttl_s)
        except Exception as exc:
            _ERROR.inc()
            log.warning("response cache write failed: %s", exc)
            return 0
        if plan.question:
            if plan.query is None:
                plan.query = semantic_cache.make_query(plan.question, plan.bucket, plan.threshold)
            if plan.query is not None:
                self._index.add(plan.tenant, plan.key, plan.query)
        return expires_at_ms

    async def close(self) -> None:
        await self._store.close()


def _semantic_part(plan: CachePlan, request: adapters_pb2.GenerateRequest, threshold: float) -> None:
    """Split a request into the question a paraphrase may change (the last turn, a user's plain text of
    bounded length) and the bucket of all the rest, which must match exactly; nothing when it has none."""
    messages = request.messages
    if not messages:
        return
    last = messages[-1]
    if last.role != "user" or last.parts or not last.content or len(last.content) > semantic_cache.MAX_CHARS:
        return
    rest = canonical_request(request)
    rest.messages[-1].content = ""
    plan.bucket = semantic_cache.bucket_id(
        plan.tenant.encode() + b"\0" + rest.SerializeToString(deterministic=True)
    )
    plan.question = last.content
    plan.threshold = threshold
