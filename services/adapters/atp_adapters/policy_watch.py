"""Holds the compiled routing policy: the router's latest snapshot, merged with this replica's open circuits."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

from grpc import aio

from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_adapters import metrics
from atp_common.config import AtpConfig
from atp_common.policy.kernel import CompiledPolicy
from atp_common.policy.snapshot import snapshot_from_config

log = logging.getLogger("atp.adapters.policy")

# Why a model is excluded here: the router's own exclusions carry their reasons, ours say this.
LOCAL_CIRCUIT_REASON = "circuit open in this replica"


class PolicyHolder:
    """The current CompiledPolicy, swapped atomically (one attribute assignment) and compiled once per change.

    Two inputs make the policy: the router's snapshot (whose exclusions merge every replica's reported
    circuits), and the models whose circuit is not closed in this replica. For those, this replica's own
    breaker decides (its exclusion lapses at its probe time, when the router's may still hold): that is
    how the probe that can reopen a model for everyone gets sent. Both inputs change rarely, so each
    change recompiles; deciding reads `policy` and never waits.
    """

    def __init__(
        self, config: AtpConfig, compile_policy: Callable[[router_pb2.PolicySnapshot], CompiledPolicy]
    ):
        self._compile = compile_policy
        # Until the router speaks, route on the configured static order.
        self._snapshot = snapshot_from_config(config, version=0)
        self._local_exclusions: dict[str, router_pb2.Exclusion] = {}
        self._changed = asyncio.Event()
        self.policy: CompiledPolicy = compile_policy(self._snapshot)
        metrics.POLICY_VERSION.set(self._snapshot.version)

    @property
    def snapshot(self) -> router_pb2.PolicySnapshot:
        """The router's snapshot in use (without local exclusions)."""
        return self._snapshot

    @property
    def version(self) -> int:
        """Version of the router's snapshot in use (0 until the first one arrives)."""
        return self._snapshot.version

    def set_snapshot(self, snapshot: router_pb2.PolicySnapshot) -> None:
        """Adopt a new router snapshot."""
        self._snapshot = snapshot
        self._recompile()
        metrics.POLICY_VERSION.set(snapshot.version)

    def set_local_exclusions(self, exclusions: Mapping[str, router_pb2.Exclusion]) -> None:
        """Replace the exclusions of this replica's circuits; recompiles only when they changed."""
        # Values too: a circuit that reopens after a failed probe keeps its model but gets a new `until`.
        if exclusions == self._local_exclusions:
            return
        self._local_exclusions = dict(exclusions)
        self._recompile()

    def _recompile(self) -> None:
        snapshot = self._snapshot
        local = self._local_exclusions
        if local:
            merged = router_pb2.PolicySnapshot()
            merged.CopyFrom(snapshot)
            del merged.exclusions[:]
            merged.exclusions.extend(e for e in snapshot.exclusions if e.model not in local)
            merged.exclusions.extend(local.values())
            snapshot = merged
        self.policy = self._compile(snapshot)
        self._notify()

    def _notify(self) -> None:
        # Wake everyone waiting on this change, and give later waiters a fresh event.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[PolicyHolder], bool], within_s: float) -> None:
        """Wait until `predicate(self)` holds (tests and diagnostics), at most `within_s` seconds."""
        async with asyncio.timeout(within_s):
            while not predicate(self):
                await self._changed.wait()


class PolicyWatcher:
    """Follows the router's WatchPolicy stream, reconnecting with bounded exponential backoff and jitter.

    Never on the request path: while the router is away the holder keeps the last snapshot it had.
    """

    def __init__(
        self,
        holder: PolicyHolder,
        channel: aio.Channel,
        *,
        replica_id: str,
        backoff_initial_s: float,
        backoff_max_s: float,
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self._holder = holder
        self._on_connect = on_connect
        self._stub = router_pb2_grpc.RouterServiceStub(channel)
        self._replica_id = replica_id
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        """Start following the router."""
        self._task = asyncio.create_task(self._run(), name="policy-watch")

    async def close(self) -> None:
        """Stop following (the open stream is cancelled with the task)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = self._backoff_initial_s
        while True:
            received = await self._follow_once()
            metrics.POLICY_RECONNECTS.inc()
            # A stream that delivered something was healthy: start the backoff over.
            backoff = self._backoff_initial_s if received else min(backoff * 2, self._backoff_max_s)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))

    async def _follow_once(self) -> bool:
        holder = self._holder
        request = router_pb2.WatchPolicyRequest(replica_id=self._replica_id, known_version=holder.version)
        # A long-lived stream has no deadline; a dead peer is found by the channel's keepalive pings.
        call = self._stub.WatchPolicy(request)
        received = False
        try:
            async for response in call:
                snapshot = response.snapshot
                if not received:
                    self.connected = True
                    log.info("following the router's policy", extra={"version": snapshot.version})
                    # A router that restarted has forgotten this replica's circuits: tell it again.
                    self._on_connect()
                received = True
                current = holder.snapshot
                # The router sends only what it judges newer; an identical resend (same version and
                # configuration) after a reconnect is not worth a recompile.
                if snapshot.version == current.version and snapshot.config_digest == current.config_digest:
                    continue
                try:
                    holder.set_snapshot(snapshot)
                except Exception:
                    # A snapshot this replica cannot compile must not take routing down: keep the last one.
                    log.exception(
                        "cannot compile policy snapshot %d; keeping %d", snapshot.version, current.version
                    )
                    continue
                log.info("policy snapshot adopted", extra={"version": snapshot.version})
        except aio.AioRpcError as exc:
            log.log(
                logging.INFO if received else logging.DEBUG,
                "policy watch ended (%s); routing on snapshot %d",
                exc.code().name,
                holder.version,
            )
        finally:
            self.connected = False
            call.cancel()
        return received
