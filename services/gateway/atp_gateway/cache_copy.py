"""Each worker's copy of the adapters' exact-match cache entries, to answer hits without calling them."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from atp.adapters.v1 import adapters_pb2
from atp_common.cache_entries import HIT, canonical_key
from atp_common.config import AtpConfig
from atp_common.limits.directory import Directory
from atp_gateway import metrics

__all__ = ["CacheCopy", "CopiedReply"]

_HIT, _MISS = metrics.CACHE_COPY.labels("hit"), metrics.CACHE_COPY.labels("miss")
_FALL_THROUGH = metrics.CACHE_COPY.labels("fall_through")


@dataclass(frozen=True, slots=True)
class CopiedReply:
    """A reply the adapters stored: as they sent it, and what producing it cost (what a hit saves)."""

    reply: adapters_pb2.GenerateResponse
    saved_cost_usd: float
    expires: float
    size: int


class CacheCopy:
    """Replies the adapters said they stored (GenerateHeader.cache_expires_at_ms), under the adapters' own
    key (atp_common.cache_entries: the tenant and everything that changes the answer), so a hit here is
    the hit the adapters would serve.

    Read when the adapters would read their cache: a route with a cache, or a request with x-atp-cache
    `use` or `no-store` (never `refresh`). A principal with limits of any kind, or a key with model lists
    of its own, is left to the adapters: they admit a hit against every limit (and report x-ratelimit-*
    values) and filter the decision by the key's lists, which this copy does not. Bounded in entries and
    bytes (least recently used out first); an entry lives until the adapters' expiry, at most `max_ttl_s`.
    """

    def __init__(
        self,
        config: AtpConfig,
        directory: Callable[[], Directory],
        *,
        max_entries: int,
        max_bytes: int,
        max_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._routes = frozenset(name for name, route in config.routes.items() if route.cache is not None)
        self._default_route = config.default_route
        self._directory = directory
        self._entries: OrderedDict[str, CopiedReply] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_ttl_s = max_ttl_s
        self._bytes = 0
        self._clock = clock
        self.enabled = max_entries > 0 and max_bytes > 0 and max_ttl_s > 0

    def reads(self, request: adapters_pb2.GenerateRequest) -> bool:
        """Whether the adapters would read their cache for `request` (one set lookup for most requests)."""
        mode = request.cache
        if mode:
            return mode != "refresh"
        return (request.model or self._default_route) in self._routes

    def lookup(self, request: adapters_pb2.GenerateRequest) -> tuple[str, CopiedReply | None]:
        """The entry's key ("" when this copy may not answer) and the copy that answers, if held."""
        if not self.enabled or not request.tenant:
            return "", None
        if not self.reads(request):
            if request.cache == "refresh" and self._entries:
                # The adapters answer it and may store a newer reply: this copy must not outlive theirs.
                self._forget(canonical_key(request, request.tenant))
            return "", None
        directory = self._directory()
        user = request.end_user or request.params.user
        if directory.limits_for(request.tenant, request.key_id, user) is not None or (
            request.key_id and directory.models_for(request.key_id) is not None
        ):
            _FALL_THROUGH.inc()
            return "", None
        key = canonical_key(request, request.tenant)
        entry = self._entries.get(key)
        if entry is None:
            _MISS.inc()
            return key, None
        if self._clock() >= entry.expires:
            self._drop(key)
            _MISS.inc()
            return key, None
        self._entries.move_to_end(key)
        _HIT.inc()
        return key, entry

    def keep(self, request: adapters_pb2.GenerateRequest, reply: adapters_pb2.GenerateResponse) -> None:
        """Copy a whole reply the adapters say they stored (or served from their store) until their expiry."""
        expires_at_ms = reply.header.cache_expires_at_ms
        if not expires_at_ms or not self.enabled or not request.tenant or reply.HasField("error"):
            return
        ttl_s = min(expires_at_ms / 1000.0 - time.time(), self._max_ttl_s)
        if ttl_s <= 0 or not reply.HasField("completion"):
            return
        size = reply.ByteSize()
        if size > self._max_bytes:
            return
        # A hit's completion was zeroed by the replay; the header keeps what the stored reply cost.
        saved = reply.header.cache_saved_cost_usd if reply.header.cache == HIT else reply.completion.cost_usd
        if reply.header.rate_limits:
            # One request's admission values are not part of the reply the copy repeats.
            copied = adapters_pb2.GenerateResponse()
            copied.CopyFrom(reply)
            copied.header.ClearField("rate_limits")
            reply = copied
        key = canonical_key(request, request.tenant)
        self._forget(key)
        self._entries[key] = CopiedReply(reply, saved, self._clock() + ttl_s, size)
        self._bytes += size
        while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
            self._drop(next(iter(self._entries)))

    def _forget(self, key: str) -> None:
        if key in self._entries:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size

    def __len__(self) -> int:
        return len(self._entries)
