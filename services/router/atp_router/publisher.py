"""Policy snapshots: built from configuration and learned state, versioned, published at a bounded rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from atp.router.v1 import router_pb2
from atp_common.config import AtpConfig
from atp_common.policy import CompiledPolicy, RouteArms, snapshot_from_config
from atp_common.tasks import cancel_and_wait
from atp_router import metrics

log = logging.getLogger("atp.router.snapshots")

ArmsSource = Callable[[], Mapping[str, RouteArms] | None]


def _no_arms() -> None:
    return None


class SnapshotPublisher:
    """Holds the current snapshot (and its compiled kernel) and hands new versions to every watcher.

    Changes (configuration, learned arms, exclusions) only mark the publisher dirty; one task rebuilds at
    most once per `min_interval_s`, so any burst of changes costs one snapshot. A rebuild whose content
    equals the current snapshot publishes nothing. Watchers hold no queue: each wakes on a publish and
    sends whatever is current, so a slow watcher skips straight to the latest version.

    Versions are milliseconds since the epoch (or the previous version plus one when that is larger): a
    restarted router's first snapshot is newer than anything its predecessor sent, so every adapters
    replica, which watches with the version it has, takes it.
    """

    def __init__(
        self,
        config: AtpConfig,
        *,
        min_interval_s: float,
        arms: ArmsSource = _no_arms,
        dirty: asyncio.Event | None = None,
    ) -> None:
        self._config = config
        self._arms = arms
        self._exclusions: tuple[router_pb2.Exclusion, ...] = ()
        self._min_interval_s = min_interval_s
        self._published = asyncio.Event()
        # Given when the arms' source must mark the publisher dirty and is built first (learning).
        self._dirty = dirty if dirty is not None else asyncio.Event()
        self._stopped = False
        self._last_publish = float("-inf")
        self._task: asyncio.Task[None] | None = None
        snapshot = snapshot_from_config(config, self._next_version(0), arms() or None)
        self._snapshot = snapshot
        self._compiled = CompiledPolicy.from_snapshot(snapshot)
        self._record(snapshot)

    @property
    def snapshot(self) -> router_pb2.PolicySnapshot:
        """The current snapshot (never mutated once published)."""
        return self._snapshot

    @property
    def compiled(self) -> CompiledPolicy:
        """The current snapshot compiled for decisions."""
        return self._compiled

    @property
    def config(self) -> AtpConfig:
        """The configuration the next snapshot is built from."""
        return self._config

    def set_config(self, config: AtpConfig) -> None:
        """Use a new configuration from the next snapshot on."""
        self._config = config
        self.mark_dirty()

    def set_exclusions(self, exclusions: Iterable[router_pb2.Exclusion]) -> None:
        """Models to exclude from routing (open circuits, failed health) from the next snapshot on."""
        self._exclusions = tuple(exclusions)
        self.mark_dirty()

    def mark_dirty(self) -> None:
        """Something a snapshot is built from changed: rebuild soon (coalesced, rate-bounded)."""
        self._dirty.set()

    def start(self) -> None:
        """Start the rebuild task."""
        self._task = asyncio.create_task(self._run(), name="snapshot-publisher")

    def stop(self) -> None:
        """End every watch stream (drain); adapters keep their last snapshot and reconnect."""
        self._stopped = True
        self._wake_watchers()

    async def close(self) -> None:
        """Stop watchers and the rebuild task."""
        self.stop()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            # Rate bound: changes during this wait fold into the one rebuild that follows it.
            wait_s = self._last_publish + self._min_interval_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._dirty.clear()
            try:
                self.rebuild()
            except Exception:
                # A snapshot that cannot be built (a bug, or state the kernel rejects) must not stop
                # publishing: keep the current one and try again on the next change.
                log.exception("building a policy snapshot failed; keeping version %d", self._snapshot.version)

    def rebuild(self) -> bool:
        """Build a snapshot now and publish it if its content changed; True when a new version went out."""
        current = self._snapshot
        candidate = snapshot_from_config(
            self._config,
            current.version,
            self._arms() or None,
            self._exclusions,
            generated_at=current.generated_at,
        )
        if candidate.SerializeToString(deterministic=True) == current.SerializeToString(deterministic=True):
            return False
        candidate.version = self._next_version(current.version)
        candidate.generated_at.GetCurrentTime()
        compiled = CompiledPolicy.from_snapshot(candidate)
        self._snapshot, self._compiled = candidate, compiled
        self._record(candidate)
        self._wake_watchers()
        return True

    @staticmethod
    def _next_version(previous: int) -> int:
        return max(previous + 1, time.time_ns() // 1_000_000)

    def _record(self, snapshot: router_pb2.PolicySnapshot) -> None:
        self._last_publish = time.monotonic()
        metrics.SNAPSHOTS_PUBLISHED.inc()
        metrics.SNAPSHOT_VERSION.set(snapshot.version)
        metrics.SNAPSHOT_BYTES.set(snapshot.ByteSize())
        log.info(
            "policy snapshot published",
            extra={
                "version": snapshot.version,
                "bytes": snapshot.ByteSize(),
                "config": snapshot.config_digest,
            },
        )

    def _wake_watchers(self) -> None:
        # Each watcher took the current event before checking the version, so none misses a publish.
        self._published.set()
        self._published = asyncio.Event()

    async def watch(self, known_version: int) -> AsyncIterator[router_pb2.PolicySnapshot]:
        """The current snapshot if newer than `known_version`, then each newer one, latest only."""
        sent = known_version
        metrics.WATCHERS.inc()
        try:
            while not self._stopped:
                wake = self._published
                snapshot = self._snapshot
                if snapshot.version > sent:
                    sent = snapshot.version
                    metrics.PUSHES.inc()
                    yield snapshot
                    continue
                await wake.wait()
        finally:
            metrics.WATCHERS.dec()
