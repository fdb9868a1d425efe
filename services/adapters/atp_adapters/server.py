"""Builds the adapters server: providers, policy watch, observation shipping and the servicer, wired once."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp_adapters.admission import Admission
from atp_adapters.circuit_exclusions import CircuitExclusions
from atp_adapters.circuit_reporter import CircuitReporter
from atp_adapters.embed import EmbedPipeline
from atp_adapters.fleet import ProviderFleet
from atp_adapters.observation_log import ObservationLog
from atp_adapters.pipeline import GeneratePipeline
from atp_adapters.policy_watch import PolicyHolder, PolicyWatcher
from atp_adapters.resilience import Circuits
from atp_adapters.response_cache import MemoryStore, RedisStore, ResponseCache
from atp_adapters.semantic_cache import SemanticIndex
from atp_adapters.servicer import AdaptersServicer
from atp_adapters.settings import AdaptersSettings
from atp_adapters.shipper import ObservationShipper
from atp_adapters.spool import Spool
from atp_adapters.targets import TargetTable, build_targets
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, load_config
from atp_common.config_watch import ConfigWatcher
from atp_common.limits import open_limiter
from atp_common.limits.directory import DirectoryFollower, open_directory_store
from atp_common.policy.kernel import CompiledPolicy
from atp_common.secrets import SecretResolver
from atp_common.server import RunningServer, ServiceRegistration, start_server

log = logging.getLogger("atp.adapters")

SERVICE_NAME = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
# Share of close_timeout_s the shipper may spend delivering at drain; the rest is for spooling and closing.
_FLUSH_SHARE = 0.6


async def build_server(
    settings: AdaptersSettings,
    *,
    config: AtpConfig | None = None,
    secrets: SecretResolver | None = None,
    rng: random.Random | None = None,
) -> RunningServer:
    """Start the adapters on settings.host:settings.port with every background task running.

    Provider keys come from `secrets` (by default a resolver built from the ATP_VAULT_* environment, owned
    and closed by this server): read now, so a missing key fails the start, and kept current in the
    background so that a rotated key is used without a restart. Changes to the configuration file's
    providers, models and deployments take effect without a restart (ConfigWatcher).
    """
    config = config if config is not None else load_config(settings.config_path)
    owns_secrets = secrets is None
    secrets = secrets if secrets is not None else SecretResolver.from_settings()
    # Built once and reused by every request: each HTTP provider owns a pooled keep-alive session.
    fleet = ProviderFleet(secrets, grace_s=settings.request_timeout_s)
    try:
        providers = await fleet.update(config)
    except BaseException:
        await fleet.close()
        if owns_secrets:
            await secrets.close()
        raise
    holder = PolicyHolder(config, CompiledPolicy.from_snapshot)
    router_channel = open_channel(settings.router_addr, settings)
    # The reporter reads the exclusions' current set; the exclusions wake the reporter on each transition.
    reporter = CircuitReporter(
        router_channel,
        lambda: exclusions.report(),
        replica_id=settings.replica_id,
        timeout_s=settings.report_timeout_s,
        backoff_initial_s=settings.report_backoff_initial_s,
        backoff_max_s=settings.report_backoff_max_s,
    )
    exclusions = CircuitExclusions(holder, on_change=reporter.mark_dirty)
    limiter = open_limiter(
        settings.redis_url,
        prefix=settings.redis_prefix,
        fail_mode=settings.limits_fail_mode,
        timeout_s=settings.limits_timeout_s,
    )
    circuits = Circuits()
    table = TargetTable(
        build_targets(
            config, providers, exclusions, circuits, quota=limiter.backend, prefix=settings.redis_prefix
        )
    )

    async def config_changed(new: AtpConfig) -> None:
        # Requests in flight keep the table (and clients) they started with; new ones take the new table.
        updated = await fleet.update(new)
        table.current = build_targets(
            new, updated, exclusions, circuits, quota=limiter.backend, prefix=settings.redis_prefix
        )
        cache.configure(new)

    config_watcher = ConfigWatcher(
        settings.config_path, config_changed, poll_s=settings.config_poll_s, sighup=settings.reload_on_sighup
    )

    watcher = PolicyWatcher(
        holder,
        router_channel,
        replica_id=settings.replica_id,
        backoff_initial_s=settings.watch_backoff_initial_s,
        backoff_max_s=settings.watch_backoff_max_s,
        on_connect=reporter.reconnected,
    )
    observer_channel = open_channel(settings.observer_addr, settings)
    shipper = ObservationShipper(
        observer_channel,
        Spool(settings.spool_dir, settings.spool_max_bytes),
        queue_size=settings.observation_queue_size,
        batch_size=settings.ship_batch_size,
        interval_s=settings.ship_interval_s,
        timeout_s=settings.ship_timeout_s,
        backoff_max_s=settings.ship_backoff_max_s,
        observation_log=ObservationLog(Path(settings.spool_dir) / "log", settings.observation_log_max_bytes),
        log_sync_s=settings.observation_log_sync_s,
    )
    limiter = open_limiter(
        settings.redis_url,
        prefix=settings.redis_prefix,
        fail_mode=settings.limits_fail_mode,
        timeout_s=settings.limits_timeout_s,
        lease_requests=settings.limits_lease_requests,
    )
    directory = DirectoryFollower(
        config,
        open_directory_store(settings.redis_url, prefix=settings.redis_prefix, path=settings.directory_path),
        poll_s=settings.directory_poll_s,
    )
    admission = Admission(
        limiter,
        directory,
        table,
        default_output_tokens=settings.default_output_tokens,
        reservation_caps={
            name: route.max_reservation_tokens
            for name, route in config.routes.items()
            if route.max_reservation_tokens is not None
        },
    )
    cache = ResponseCache(
        RedisStore(settings.redis_url, f"{settings.redis_prefix}cache:")
        if settings.redis_url
        else MemoryStore(settings.cache_max_entries, settings.cache_max_bytes),
        config,
        default_ttl_s=settings.cache_default_ttl_s,
        max_reply_bytes=settings.cache_max_reply_bytes,
        index=SemanticIndex(settings.cache_semantic_entries, settings.cache_semantic_tenants),
    )
    pipeline = GeneratePipeline(
        config,
        holder,
        table,
        shipper,
        replica_id=settings.replica_id,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
        cache=cache,
    )
    embedder = EmbedPipeline(
        holder,
        table,
        pipeline.recorder,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
    )
    servicer = AdaptersServicer(pipeline, holder, table, embedder, shipper, settings.replica_id, directory)

    try:
        running = await start_server(
            settings,
            [
                ServiceRegistration(
                    adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, SERVICE_NAME
                )
            ],
        )
    except BaseException:
        await fleet.close()
        await cache.close()
        await limiter.close()
        await directory.close()
        await router_channel.close()
        await observer_channel.close()
        if owns_secrets:
            await secrets.close()
        raise
    secrets.start()
    watcher.start()
    config_watcher.start()
    # The first directory load is bounded; a store that is down leaves the configuration's tenants in force.
    await directory.start()
    limiter.start()
    reporter.start()
    shipper.start()
    # After server.stop(grace) every in-flight request has submitted its observation: stop following the
    # router, deliver (or spool) the queue, then release connections.
    running.add_closer("config watch", config_watcher.close)
    running.add_closer("policy watch", watcher.close)
    running.add_closer("circuit reporter", reporter.close)
    running.add_closer("pii redaction", pipeline.recorder.drain_redactions)
    running.add_closer("observation shipper", lambda: shipper.close(settings.close_timeout_s * _FLUSH_SHARE))
    running.add_closer("limits", lambda: limiter.close(settings.close_timeout_s * 0.2))
    running.add_closer("directory", directory.close)
    running.add_closer("providers", fleet.close)
    running.add_closer("response cache", cache.close)
    running.add_closer("router channel", router_channel.close)
    running.add_closer("observer channel", observer_channel.close)
    if owns_secrets:
        running.add_closer("secrets", secrets.close)
    # Tests and diagnostics reach the parts through the running server.
    running.adapters = AdaptersParts(  # type: ignore[attr-defined]
        holder, watcher, shipper, exclusions, table, reporter
    )
    running.admission = admission  # type: ignore[attr-defined]
    return running


class AdaptersParts:
    """The live parts of one adapters server, for tests and diagnostics."""

    def __init__(
        self,
        holder: PolicyHolder,
        watcher: PolicyWatcher,
        shipper: ObservationShipper,
        exclusions: CircuitExclusions,
        targets: TargetTable,
        reporter: CircuitReporter,
    ) -> None:
        self.holder = holder
        self.watcher = watcher
        self.shipper = shipper
        self.exclusions = exclusions
        self.targets = targets
        self.reporter = reporter
