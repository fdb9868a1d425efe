"""The learning loop: bootstrap from the observer, then apply its reward stream to the policy learner."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence

import grpc

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.config import AtpConfig
from atp_common.errors import from_rpc_error
from atp_common.policy import RouteArms
from atp_common.tasks import cancel_and_wait
from atp_router import metrics
from atp_router.arm_learning import PolicyLearner
from atp_router.settings import RouterSettings

log = logging.getLogger("atp.router.learning")


def _learning_shape(config: AtpConfig) -> tuple[object, ...]:
    """What the learner is built from: a change here means the learning state must be rebuilt."""
    return tuple(
        (
            name,
            route.policy,
            route.per_tenant,
            tuple((c, config.models[c].quality_prior) for c in route.candidates),
        )
        for name, route in config.routes.items()
    )


def _needs_replay(config: AtpConfig, decay: float) -> bool:
    # Aggregates carry no feature vectors and no event order: contextual or decayed state needs the events.
    return decay < 1.0 or any(route.policy == "linucb" for route in config.routes.values())


class RewardsSubscriber:
    """Keeps a PolicyLearner in step with the observer's reward log; the log is the source of truth.

    On start (and after a configuration change that alters routes or candidates) a fresh learner is seeded
    from GetArmStats and the stream resumes from the cursor those statistics include, or, for contextual
    or decayed learning, from cursor 0. The previous learner keeps serving snapshots until the new one is
    seeded. Every replica applies the same events in cursor order, so replicas converge and a restart
    loses nothing. The stream reconnects with bounded, jittered exponential backoff.
    """

    def __init__(
        self,
        stub: observer_pb2_grpc.ObserverServiceStub,
        config: AtpConfig,
        settings: RouterSettings,
        *,
        on_change: Callable[[], None],
    ) -> None:
        self._stub = stub
        self._config = config
        self._settings = settings
        self._on_change = on_change
        self._learner: PolicyLearner | None = None
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._retired: list[asyncio.Task[None]] = []

    @property
    def cursor(self) -> int:
        """The last reward cursor applied."""
        return self._cursor

    def arms(self) -> Mapping[str, RouteArms] | None:
        """The learned arms for the next snapshot; None until the first bootstrap.

        Only contextual routes carry the regression (a_inv, b): for the others it is dead weight in every
        snapshot (d*d + d doubles per arm), and it is the one part that seeding from aggregates cannot
        rebuild, so leaving it out also keeps replicas' snapshots identical however they started.
        """
        if self._learner is None:
            return None
        exported = self._learner.export()
        routes = self._config.routes
        for name, route_arms in exported.items():
            route = routes.get(name)
            if route is not None and route.policy == "linucb":
                continue
            for arm in (*route_arms.arms, *(a for t in route_arms.tenant_arms for a in t.arms)):
                del arm.a_inv[:]
                del arm.b[:]
        return exported

    def start(self) -> None:
        """Start (or restart) the loop."""
        self._task = asyncio.create_task(self._run(self._config), name="rewards-subscriber")

    async def close(self) -> None:
        """Stop the loop (and any loop a configuration change retired)."""
        tasks = [*self._retired, *([self._task] if self._task else [])]
        self._task, self._retired = None, []
        await cancel_and_wait(*tasks)

    def set_config(self, config: AtpConfig) -> None:
        """Adopt a new configuration; rebuild the learning state when its routes or candidates changed."""
        changed = _learning_shape(config) != _learning_shape(self._config)
        self._config = config
        if changed and self._task is not None:
            log.info("routes changed: rebuilding learning state from the observer")
            # The old loop is suspended right now, so after cancel() it runs no more of its body.
            self._task.cancel()
            self._retired = [t for t in self._retired if not t.done()] + [self._task]
            self.start()

    async def _bootstrap(self, config: AtpConfig) -> tuple[PolicyLearner, int]:
        learner = PolicyLearner(config, decay=self._settings.learning_decay)
        mode = self._settings.bootstrap
        if mode == "replay" or (mode == "auto" and _needs_replay(config, self._settings.learning_decay)):
            return learner, 0
        stats = await self._stub.GetArmStats(
            observer_pb2.GetArmStatsRequest(), timeout=self._settings.observer_timeout_s
        )
        used = learner.load_stats(stats.arms)
        log.info("learning state seeded from arm statistics", extra={"arms": used, "cursor": stats.cursor})
        return learner, stats.cursor

    async def _run(self, config: AtpConfig) -> None:
        settings = self._settings
        backoff = settings.rewards_backoff_initial_s
        learner: PolicyLearner | None = None
        # The last cursor applied to `learner`: where every reconnect resumes, and below which resent
        # events are skipped, so nothing is applied twice however the stream breaks.
        cursor = 0
        while True:
            try:
                if learner is None:
                    learner, cursor = await self._bootstrap(config)
                    self._learner, self._cursor = learner, cursor
                    metrics.REWARD_CURSOR.set(cursor)
                    self._on_change()
                # Long-lived on purpose (no deadline): the channel's keepalive pings detect a dead observer.
                call = self._stub.WatchRewards(
                    observer_pb2.WatchRewardsRequest(cursor=cursor, max_batch=settings.rewards_max_batch)
                )
                try:
                    async for response in call:
                        cursor = self._apply(learner, response.events, cursor)
                        backoff = settings.rewards_backoff_initial_s
                finally:
                    call.cancel()
            except grpc.aio.AioRpcError as exc:
                metrics.REWARD_STREAM_ERRORS.inc()
                error = from_rpc_error(exc)
                log.warning("reward stream from the observer failed (%s); retrying in %.1fs", error, backoff)
            # A clean end means the observer is draining; either way reconnect after a pause, with jitter so
            # replicas that lost the same observer do not come back in lockstep.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, settings.rewards_backoff_max_s)

    def _apply(self, learner: PolicyLearner, events: Sequence[observer_pb2.RewardEvent], cursor: int) -> int:
        """Apply the events above `cursor` in order; returns the new last cursor."""
        applied = 0
        for event in events:
            if event.cursor <= cursor:
                continue  # already applied (a resend after a reconnect)
            try:
                learner.apply(event)
            except Exception:
                # Every replica skips the same bad event, so they still agree; the log has it.
                log.exception("skipping reward event %d that the learner rejected", event.cursor)
            cursor = event.cursor
            applied += 1
        if applied:
            self._cursor = cursor
            metrics.REWARDS_APPLIED.inc(applied)
            metrics.REWARD_CURSOR.set(cursor)
            self._on_change()
        return cursor
