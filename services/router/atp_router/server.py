"""Builds the router's gRPC server: snapshot publisher, config watcher, learning loop and RouterService."""

from __future__ import annotations

import logging
import random

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
from atp_common.limits.directory import Directory, DirectoryFollower, open_directory_store
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


async def build_server(settings: RouterSettings, *, config: AtpConfig | None = None) -> RunningServer:
    """Publish snapshots from the configuration (and, with an observer, from learning) and serve.

    `config` replaces the file for tests; the file named in the settings is still watched when set.
    """
    if config is None:
        config = load_config(settings.config_path)
    channel = open_channel(settings.observer_addr, settings) if settings.observer_addr else None
    observer = observer_pb2_grpc.ObserverServiceStub(channel) if channel is not None else None

    # The two refer to each other: learning marks the publisher dirty, the publisher reads learned arms.
    subscriber = (
        RewardsSubscriber(observer, config, settings, on_change=lambda: publisher.mark_dirty())
        if observer is not None
        else None
    )
    publisher = SnapshotPublisher(
        config,
        min_interval_s=settings.snapshot_min_interval_s,
        arms=subscriber.arms if subscriber is not None else lambda: None,
    )

    def directory_changed(directory: Directory) -> None:
        # Tenant overrides from the admin API (allow/deny lists) reach the adapters through the snapshot.
        publisher.set_config(directory.config)
        if subscriber is not None:
            subscriber.set_config(directory.config)

    directory = DirectoryFollower(
        config,
        open_directory_store(settings.redis_url, prefix=settings.redis_prefix, path=settings.directory_path),
        poll_s=settings.directory_poll_s,
        on_change=directory_changed,
    )
    await directory.start()

    def config_changed(new: AtpConfig) -> None:
        directory.set_config(new)

    watcher = ConfigWatcher(
        settings.config_path, config_changed, poll_s=settings.config_poll_s, sighup=settings.reload_on_sighup
    )
    servicer = RouterServicer(
        publisher,
        DecisionLog(settings.decision_log_size),
        observer=observer,
        observer_timeout_s=settings.observer_timeout_s,
        rng=random.Random(settings.seed),
    )
    # Open circuits reported by adapters replicas become the snapshot's exclusions (and Route's); with
    # Redis, every router replica's reports do, whichever replica an adapters replica reported to.
    reported = ReportedExclusions(
        publisher.set_exclusions,
        max_replicas=settings.exclusion_max_replicas,
        max_exclusions=settings.exclusion_max_per_report,
        max_hold_s=settings.exclusion_max_hold_s,
        share=(
            RedisExclusionShare(
                settings.redis_url, prefix=settings.redis_prefix, timeout_s=settings.exclusion_share_timeout_s
            )
            if settings.redis_url
            else None
        ),
        share_poll_s=settings.exclusion_share_poll_s,
        share_timeout_s=settings.exclusion_share_timeout_s,
    )
    try:
        await reported.start()
        running = await start_server(
            settings,
            [
                ServiceRegistration(
                    router_pb2_grpc.add_RouterServiceServicer_to_server, servicer, SERVICE_NAME
                ),
                ServiceRegistration(
                    health_report_pb2_grpc.add_HealthReportServiceServicer_to_server,
                    HealthReportServicer(reported),
                    HEALTH_REPORT_SERVICE_NAME,
                ),
                ServiceRegistration(
                    admin_pb2_grpc.add_AdminServiceServicer_to_server,
                    AdminServicer(directory, AuditLog(observer, timeout_s=settings.observer_timeout_s)),
                    ADMIN_SERVICE_NAME,
                ),
            ],
        )
    except BaseException:
        await reported.close()
        await directory.close()
        if channel is not None:
            await channel.close()
        raise
    publisher.start()
    watcher.start()
    if subscriber is not None:
        subscriber.start()
    # Policy watches never end on their own: end them when the drain starts, so server.stop need not wait
    # out the grace period (adapters keep routing on their last snapshot and reconnect).
    running.on_drain(publisher.stop)
    running.add_closer("config-watch", watcher.close)
    running.add_closer("directory", directory.close)
    if subscriber is not None:
        running.add_closer("learning", subscriber.close)
    running.add_closer("reported-exclusions", reported.close)
    running.add_closer("publisher", publisher.close)
    if channel is not None:
        running.add_closer("observer-channel", channel.close)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import shutdown_tracing

        running.add_closer("tracing", shutdown_tracing)
    return running
