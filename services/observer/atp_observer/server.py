"""Builds the observer's gRPC server: the servicer, the store, the ingest buffer and their background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial

from grpc import aio

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.config import AtpConfig, load_config
from atp_common.lifecycle import Component, open_lifecycle
from atp_common.privacy import PrivacyPolicy
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.tasks import cancel_and_wait
from atp_observer import metrics
from atp_observer.ingest import IngestBuffer, ingest_stream
from atp_observer.queries import Queries
from atp_observer.rewards_feed import RewardsFeed
from atp_observer.settings import ObserverSettings
from atp_observer.store import open_store
from atp_observer.store.base import Store
from atp_observer.store.rewards import RewardModel

log = logging.getLogger("atp.observer")

SERVICE_NAME = observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].full_name


class ObserverServicer(observer_pb2_grpc.ObserverServiceServicer):
    """ObserverService: each RPC family lives in its own module; this class only routes calls to them."""

    def __init__(self, settings: ObserverSettings, buffer: IngestBuffer, feed: RewardsFeed, queries: Queries):
        self._settings = settings
        self._buffer = buffer
        self._feed = feed
        self._queries = queries

    async def Ingest(
        self, request_iterator: AsyncIterator[observer_pb2.IngestRequest], context: aio.ServicerContext
    ) -> observer_pb2.IngestResponse:
        return await ingest_stream(
            self._buffer,
            request_iterator,
            max_batch=self._settings.max_batch_observations,
            commit_timeout_s=self._settings.commit_timeout_s,
        )

    async def RecordFeedback(
        self, request: observer_pb2.RecordFeedbackRequest, context: aio.ServicerContext
    ) -> observer_pb2.RecordFeedbackResponse:
        return await self._queries.record_feedback(request)

    async def WatchRewards(
        self, request: observer_pb2.WatchRewardsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[observer_pb2.WatchRewardsResponse]:
        async for response in self._feed.watch(request):
            yield response

    async def QueryUsage(
        self, request: observer_pb2.QueryUsageRequest, context: aio.ServicerContext
    ) -> observer_pb2.QueryUsageResponse:
        return await self._queries.query_usage(request)

    async def ListObservations(
        self, request: observer_pb2.ListObservationsRequest, context: aio.ServicerContext
    ) -> observer_pb2.ListObservationsResponse:
        return await self._queries.list_observations(request)

    async def GetArmStats(
        self, request: observer_pb2.GetArmStatsRequest, context: aio.ServicerContext
    ) -> observer_pb2.GetArmStatsResponse:
        return await self._queries.get_arm_stats(request)

    async def GetDecision(
        self, request: observer_pb2.GetDecisionRequest, context: aio.ServicerContext
    ) -> observer_pb2.GetDecisionResponse:
        return await self._queries.get_decision(request)

    async def ListFeedback(
        self, request: observer_pb2.ListFeedbackRequest, context: aio.ServicerContext
    ) -> observer_pb2.ListFeedbackResponse:
        return await self._queries.list_feedback(request)

    async def GetStoreStatus(
        self, request: observer_pb2.GetStoreStatusRequest, context: aio.ServicerContext
    ) -> observer_pb2.GetStoreStatusResponse:
        return await self._queries.store_status(self._buffer.depth)

    async def RecordAudit(
        self, request: observer_pb2.RecordAuditRequest, context: aio.ServicerContext
    ) -> observer_pb2.RecordAuditResponse:
        return await self._queries.record_audit(request)

    async def ListAudit(
        self, request: observer_pb2.ListAuditRequest, context: aio.ServicerContext
    ) -> observer_pb2.ListAuditResponse:
        return await self._queries.list_audit(request)


def make_store(settings: ObserverSettings, reward_model: RewardModel) -> Store:
    """The store the settings name: PostgreSQL when a DSN is set, else the SQLite file."""
    return open_store(
        settings.database_url,
        settings.sqlite_path,
        reward_model=reward_model,
        retention_days=settings.retention_days,
        pool_min=settings.pool_min_size,
        pool_max=settings.pool_max_size,
    )


async def build_server(
    settings: ObserverSettings, *, config: AtpConfig | None = None, store: Store | None = None
) -> RunningServer[None]:
    """Open the store (the settings' one unless given), start the writers and maintenance, and serve.

    The server owns the store either way: it is closed when the server stops. Components close in the
    reverse of their order here: after server.stop no batch arrives any more, so the buffer writes what it
    holds (bounded) before the store closes.
    """
    if config is None:
        config = load_config(settings.config_path)
    if store is None:
        store = make_store(settings, RewardModel.from_config(config))
    life = await open_lifecycle(settings)
    async with life.starting():
        await life.add(Component("store", start=store.open, close=store.close))
        maintenance = _Maintenance(store, settings.maintain_interval_s)
        await life.add(Component("maintenance", start=maintenance.start, close=maintenance.close))
        feed = RewardsFeed(store, max_batch=settings.rewards_max_batch, poll_s=settings.rewards_poll_s)
        # Reward watches never end on their own: end them when the drain starts, so server.stop need not
        # wait out the grace period for them (routers reconnect, to another replica when there is one).
        await life.add(Component("rewards feed", drain=feed.stop))
        buffer = IngestBuffer(
            store,
            capacity=settings.buffer_observations,
            writers=settings.writer_count,
            wait_s=settings.buffer_wait_s,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            merge_observations=settings.merge_observations,
            on_commit=feed.notify,
        )
        flush = partial(buffer.close, settings.flush_timeout_s)
        await life.add(Component("ingest buffer", start=buffer.start, close=flush))
        servicer = ObserverServicer(
            settings, buffer, feed, Queries(store, on_reward=feed.notify, privacy=PrivacyPolicy(config))
        )
        registration = ServiceRegistration(
            observer_pb2_grpc.add_ObserverServiceServicer_to_server, servicer, SERVICE_NAME
        )
        return await start_server(settings, [registration], life=life)


class _Maintenance:
    """Partition upkeep and retention, now and then every `interval_s`, in one owned task."""

    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="observer-maintain")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        # A failure waits for the next round.
        while True:
            try:
                await self._store.maintain()
            except Exception:
                metrics.DB_ERRORS.labels("maintain").inc()
                log.exception("store maintenance failed; retrying in %.0fs", self._interval_s)
            await asyncio.sleep(self._interval_s)
