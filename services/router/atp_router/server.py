"""Builds the router's gRPC server: snapshot publisher, config watcher, learning loop and RouterService."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from atp.observer.v1 import observer_pb2_grpc
from atp.router.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    health_report_pb2,
    health_report_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, load_config
from atp_common.config_watch import ConfigWatcher
from atp_common.lifecycle import Component, open_lifecycle
from atp_common.limits.directory import Directory, follow_directory
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_router.admin import AdminServicer
from atp_router.audit import AuditLog
from atp_router.decisions import DecisionLog
from atp_router.exclusion_share import RedisExclusionShare
from atp_router.health_reports import HealthReportServicer, ReportedExclusions
from atp_router.learning import RewardsSubscriber
from atp_router.publisher import SnapshotPublisher
from atp_router.routing import RouterServicer
from atp_router.settings import RouterSettings

log = logging.getLogger("atp.router")

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
HEALTH_REPORT_SERVICE_NAME = health_report_pb2.DESCRIPTOR.services_by_name["HealthReportService"].full_name


async def build_server(settings: RouterSettings, *, config: AtpConfig | None = None) -> RunningServer[None]:
    """Publish snapshots from the configuration (and, with an observer, from learning) and serve.

    `config` replaces the file for tests; the file named in the settings is still watched when set.
    Components close in the reverse of their order here.
    """
    if config is None:
        config = load_config(settings.config_path)
    life = await open_lifecycle(settings)
    async with life.starting():
        observer = None
        if settings.observer_addr:
            channel = open_channel(settings.observer_addr, settings)
            await life.add(Component("observer channel", close=channel.close))
            observer = observer_pb2_grpc.ObserverServiceStub(channel)
        # Learning marks the publisher dirty (through the event they share); the publisher reads its arms.
        changed = asyncio.Event()
        subscriber = (
            RewardsSubscriber(observer, config, settings, on_change=changed.set)
            if observer is not None
            else None
        )
        publisher = SnapshotPublisher(
            config,
            min_interval_s=settings.snapshot_min_interval_s,
            arms=subscriber.arms if subscriber is not None else _no_arms,
            dirty=changed,
        )
        # Policy watches never end on their own: end them when the drain starts, so server.stop need not
        # wait out the grace period (adapters keep routing on their last snapshot and reconnect).
        await life.add(
            Component("publisher", start=publisher.start, drain=publisher.stop, close=publisher.close)
        )
        reported = _reported_exclusions(settings, publisher)
        await life.add(Component("reported exclusions", start=reported.start, close=reported.close))
        if subscriber is not None:
            await life.add(Component("learning", start=subscriber.start, close=subscriber.close))
        follow = _Follow(publisher, subscriber)
        directory = follow_directory(settings, config, on_change=follow.directory_changed)
        await life.add(Component("directory", start=directory.start, close=directory.close))
        watcher = ConfigWatcher(
            settings.config_path,
            directory.set_config,
            poll_s=settings.config_poll_s,
            sighup=settings.reload_on_sighup,
        )
        await life.add(Component("config watch", start=watcher.start, close=watcher.close))
        servicer = RouterServicer(
            publisher,
            DecisionLog(settings.decision_log_size),
            observer=observer,
            observer_timeout_s=settings.observer_timeout_s,
            rng=random.Random(settings.seed),
        )
        audit = AuditLog(observer, timeout_s=settings.observer_timeout_s)
        registrations = _registrations(servicer, reported, AdminServicer(directory, audit))
        return await start_server(settings, registrations, life=life)


def _registrations(
    servicer: RouterServicer, reported: ReportedExclusions, admin: AdminServicer
) -> list[ServiceRegistration]:
    return [
        ServiceRegistration(router_pb2_grpc.add_RouterServiceServicer_to_server, servicer, SERVICE_NAME),
        ServiceRegistration(
            health_report_pb2_grpc.add_HealthReportServiceServicer_to_server,
            HealthReportServicer(reported),
            HEALTH_REPORT_SERVICE_NAME,
        ),
        ServiceRegistration(admin_pb2_grpc.add_AdminServiceServicer_to_server, admin, ADMIN_SERVICE_NAME),
    ]


def _no_arms() -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Follow:
    """Tenant overrides from the admin API (allow/deny lists) reach the adapters through the snapshot."""

    publisher: SnapshotPublisher
    subscriber: RewardsSubscriber | None

    def directory_changed(self, directory: Directory) -> None:
        self.publisher.set_config(directory.config)
        if self.subscriber is not None:
            self.subscriber.set_config(directory.config)


def _reported_exclusions(settings: RouterSettings, publisher: SnapshotPublisher) -> ReportedExclusions:
    # Open circuits reported by adapters replicas become the snapshot's exclusions (and Route's); with
    # Redis, every router replica's reports do, whichever replica an adapters replica reported to.
    share = (
        RedisExclusionShare(
            settings.redis_url, prefix=settings.redis_prefix, timeout_s=settings.exclusion_share_timeout_s
        )
        if settings.redis_url
        else None
    )
    return ReportedExclusions(
        publisher.set_exclusions,
        max_replicas=settings.exclusion_max_replicas,
        max_exclusions=settings.exclusion_max_per_report,
        max_hold_s=settings.exclusion_max_hold_s,
        share=share,
        share_poll_s=settings.exclusion_share_poll_s,
        share_timeout_s=settings.exclusion_share_timeout_s,
    )
