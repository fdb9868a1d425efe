"""WatchRewards: pages of reward events from a cursor, then new ones as this or another replica writes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from atp.observer.v1 import observer_pb2
from atp_common.errors import InvalidArgument
from atp_observer import metrics
from atp_observer.store.base import Store


class RewardsFeed:
    """Wakes reward watchers when this process commits rewards; a slow poll covers other writers.

    Memory per watcher is one page (at most `max_batch` events): events are read from the store, never
    queued per watcher, so a slow router only slows its own stream.
    """

    def __init__(self, store: Store, *, max_batch: int, poll_s: float) -> None:
        self._store = store
        self._max_batch = max_batch
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._stopped = False

    def notify(self) -> None:
        """New reward events may exist: wake every watcher (ingest and feedback call this after commit)."""
        # Each wait takes the current event before it reads, so a notify during the read is never missed.
        self._wake.set()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """End every watch stream (drain): routers reconnect, to another replica if there is one."""
        self._stopped = True
        self.notify()

    async def watch(
        self, request: observer_pb2.WatchRewardsRequest
    ) -> AsyncIterator[observer_pb2.WatchRewardsResponse]:
        """Events after `request.cursor` in cursor order, in messages of at most `max_batch` events."""
        if request.cursor < 0:
            raise InvalidArgument("cursor must not be negative", param="cursor")
        if request.max_batch < 0:
            raise InvalidArgument("max_batch must not be negative", param="max_batch")
        limit = min(request.max_batch or self._max_batch, self._max_batch)
        cursor = request.cursor
        metrics.REWARD_WATCHERS.inc()
        try:
            while not self._stopped:
                wake = self._wake
                events = await self._store.rewards_after(cursor, limit)
                if events:
                    cursor = events[-1].cursor
                    metrics.REWARDS_SENT.inc(len(events))
                    yield observer_pb2.WatchRewardsResponse(events=events)
                    if len(events) == limit:
                        continue  # More may be waiting: page on without sleeping.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._poll_s)
        finally:
            metrics.REWARD_WATCHERS.dec()
