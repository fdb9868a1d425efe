"""Builds the adapters server: providers, policy watch, observation shipping and the servicer, wired once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeAlias

from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp_adapters.admission import Admission
from atp_adapters.circuit_exclusions import CircuitExclusions
from atp_adapters.circuit_reporter import CircuitReporter
from atp_adapters.edge_hits import EdgeHits
from atp_adapters.embed import EmbedPipeline
from atp_adapters.fleet import ProviderFleet
from atp_adapters.limits import Limiter, open_limiter
from atp_adapters.observation_log import ObservationLog
from atp_adapters.pipeline import GeneratePipeline
from atp_adapters.policy_watch import PolicyHolder, PolicyWatcher
from atp_adapters.providers.base import Provider
from atp_adapters.resilience import Circuits
from atp_adapters.response_cache import MemoryStore, RedisStore, ResponseCache
from atp_adapters.secrets import SecretResolver
from atp_adapters.semantic_cache import SemanticIndex
from atp_adapters.servicer import AdaptersServicer
from atp_adapters.settings import AdaptersSettings
from atp_adapters.shipper import ObservationShipper
from atp_adapters.spool import Spool
from atp_adapters.targets import TargetTable, build_targets
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, load_config
from atp_common.config_watch import ConfigWatcher
from atp_common.lifecycle import Component, Lifecycle, open_lifecycle
from atp_common.limits.directory import DirectoryFollower, follow_directory
from atp_common.policy.kernel import CompiledPolicy
from atp_common.server import RunningServer, ServiceRegistration, start_server

log = logging.getLogger("atp.adapters")

__all__ = ["AdaptersParts", "AdaptersServer", "build_server"]

SERVICE_NAME = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
# Shares of close_timeout_s at drain: the shipper delivers its queue, the limiter returns its leases; the
# rest is for spooling and closing.
_FLUSH_SHARE = 0.6
_LIMITS_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class AdaptersParts:
    """The live parts of one adapters server, for tests and diagnostics."""

    holder: PolicyHolder
    watcher: PolicyWatcher
    shipper: ObservationShipper
    exclusions: CircuitExclusions
    targets: TargetTable
    reporter: CircuitReporter
    admission: Admission


AdaptersServer: TypeAlias = RunningServer[AdaptersParts]


async def build_server(
    settings: AdaptersSettings,
    *,
    config: AtpConfig | None = None,
    secrets: SecretResolver | None = None,
    rng: random.Random | None = None,
) -> AdaptersServer:
    """Start the adapters on settings.host:settings.port with every background task running.

    Provider keys come from `secrets` (by default a resolver built from the ATP_VAULT_* environment, owned
    and closed by this server): read now, so a missing key fails the start, and kept current in the
    background so that a rotated key is used without a restart. Changes to the configuration file's
    providers, models and deployments take effect without a restart (ConfigWatcher).

    Components close in the reverse of their order here: after server.stop(grace) every in-flight request
    has submitted its observation, so the watches stop first, then the shipper delivers (or spools) its
    queue, then connections are released.
    """
    config = config if config is not None else load_config(settings.config_path)
    life = await open_lifecycle(settings)
    async with life.starting():
        clients = await _open_clients(life, settings, config, secrets)
        holder = PolicyHolder(config, CompiledPolicy.from_snapshot)
        # The exclusions wake the reporter on each transition; the reporter reads their current set.
        changed = asyncio.Event()
        exclusions = CircuitExclusions(holder, on_change=changed.set)
        reconfigure = _Reconfigure(
            clients, TargetTable({}), exclusions, Circuits(), _response_cache(settings, config)
        )
        reconfigure.build_targets(config, clients.providers)
        await life.add(Component("response cache", close=reconfigure.cache.close))
        shipper = _shipper(settings, clients.observer_channel)
        shipper_close = partial(shipper.close, settings.close_timeout_s * _FLUSH_SHARE)
        await life.add(Component("observation shipper", start=shipper.start, close=shipper_close))
        admission, pipeline, embedder = _pipelines(settings, config, holder, reconfigure, shipper, rng)
        await life.add(Component("pii redaction", close=pipeline.recorder.drain_redactions))
        streams = await _router_streams(life, settings, clients.router_channel, holder, exclusions, changed)
        reporter, watcher = streams
        config_watcher = ConfigWatcher(
            settings.config_path, reconfigure, poll_s=settings.config_poll_s, sighup=settings.reload_on_sighup
        )
        await life.add(Component("config watch", start=config_watcher.start, close=config_watcher.close))
        table = reconfigure.table
        parts = AdaptersParts(holder, watcher, shipper, exclusions, table, reporter, admission)
        edge_hits = EdgeHits(
            holder, table, pipeline.recorder, default_tenant=settings.default_tenant, rng=rng
        )
        directory = reconfigure.clients.directory
        servicer = AdaptersServicer(
            pipeline, holder, table, embedder, shipper, settings.replica_id, directory, edge_hits
        )
        # At the drain, the gateway's Multiplex streams are told to take no new calls (each then ends).
        await life.add(Component("multiplex", drain=servicer.hub.drain))
        registration = ServiceRegistration(
            adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, SERVICE_NAME
        )
        return await start_server(settings, [registration], parts=parts, life=life)


@dataclass(frozen=True, slots=True)
class _Clients:
    """What the adapters connect to: peers, providers, the limits store and the tenant directory."""

    router_channel: aio.Channel
    observer_channel: aio.Channel
    fleet: ProviderFleet
    providers: Mapping[str, Provider]
    limiter: Limiter
    directory: DirectoryFollower
    prefix: str


async def _open_clients(
    life: Lifecycle, settings: AdaptersSettings, config: AtpConfig, secrets: SecretResolver | None
) -> _Clients:
    if secrets is None:
        secrets = SecretResolver.from_settings()
        await life.add(Component("secrets", close=secrets.close))
    router_channel = await _channel(life, "router channel", settings.router_addr, settings)
    observer_channel = await _channel(life, "observer channel", settings.observer_addr, settings)
    # Built once and reused by every request: each HTTP provider owns a pooled keep-alive session.
    fleet = ProviderFleet(secrets, grace_s=settings.request_timeout_s)
    await life.add(Component("providers", close=fleet.close))
    providers = await fleet.update(config)
    # After the first read: the refresh follows the references that read registered.
    await life.add(Component("secret refresh", start=secrets.start))
    limiter = open_limiter(
        settings.redis_url,
        prefix=settings.redis_prefix,
        fail_mode=settings.limits_fail_mode,
        timeout_s=settings.limits_timeout_s,
        lease_requests=settings.limits_lease_requests,
    )
    limits_close = partial(limiter.close, settings.close_timeout_s * _LIMITS_SHARE)
    await life.add(Component("limits", start=limiter.start, close=limits_close))
    directory = follow_directory(settings, config)
    # The first load is bounded; a store that is down leaves the configuration's tenants in force.
    await life.add(Component("directory", start=directory.start, close=directory.close))
    return _Clients(
        router_channel, observer_channel, fleet, providers, limiter, directory, settings.redis_prefix
    )


def _pipelines(
    settings: AdaptersSettings,
    config: AtpConfig,
    holder: PolicyHolder,
    reconfigure: _Reconfigure,
    shipper: ObservationShipper,
    rng: random.Random | None,
) -> tuple[Admission, GeneratePipeline, EmbedPipeline]:
    admission = Admission(
        reconfigure.clients.limiter,
        reconfigure.clients.directory,
        reconfigure.table,
        default_output_tokens=settings.default_output_tokens,
        reservation_caps={
            name: route.max_reservation_tokens
            for name, route in config.routes.items()
            if route.max_reservation_tokens is not None
        },
    )
    pipeline = GeneratePipeline(
        config,
        holder,
        reconfigure.table,
        shipper,
        replica_id=settings.replica_id,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
        cache=reconfigure.cache,
    )
    embedder = EmbedPipeline(
        holder,
        reconfigure.table,
        pipeline.recorder,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
    )
    return admission, pipeline, embedder


async def _router_streams(
    life: Lifecycle,
    settings: AdaptersSettings,
    channel: aio.Channel,
    holder: PolicyHolder,
    exclusions: CircuitExclusions,
    changed: asyncio.Event,
) -> tuple[CircuitReporter, PolicyWatcher]:
    """The circuit reports sent to the router and the policy snapshots followed from it."""
    reporter = CircuitReporter(
        channel,
        exclusions.report,
        replica_id=settings.replica_id,
        timeout_s=settings.report_timeout_s,
        backoff_initial_s=settings.report_backoff_initial_s,
        backoff_max_s=settings.report_backoff_max_s,
        dirty=changed,
    )
    await life.add(Component("circuit reporter", start=reporter.start, close=reporter.close))
    watcher = PolicyWatcher(
        holder,
        channel,
        replica_id=settings.replica_id,
        backoff_initial_s=settings.watch_backoff_initial_s,
        backoff_max_s=settings.watch_backoff_max_s,
        on_connect=reporter.reconnected,
    )
    await life.add(Component("policy watch", start=watcher.start, close=watcher.close))
    return reporter, watcher


async def _channel(life: Lifecycle, name: str, address: str, settings: AdaptersSettings) -> aio.Channel:
    channel = open_channel(address, settings)
    await life.add(Component(name, close=channel.close))
    return channel


def _response_cache(settings: AdaptersSettings, config: AtpConfig) -> ResponseCache:
    return ResponseCache(
        RedisStore(settings.redis_url, f"{settings.redis_prefix}cache:")
        if settings.redis_url
        else MemoryStore(settings.cache_max_entries, settings.cache_max_bytes),
        config,
        default_ttl_s=settings.cache_default_ttl_s,
        max_reply_bytes=settings.cache_max_reply_bytes,
        index=SemanticIndex(settings.cache_semantic_entries, settings.cache_semantic_tenants),
    )


def _shipper(settings: AdaptersSettings, channel: aio.Channel) -> ObservationShipper:
    return ObservationShipper(
        channel,
        Spool(settings.spool_dir, settings.spool_max_bytes),
        queue_size=settings.observation_queue_size,
        batch_size=settings.ship_batch_size,
        interval_s=settings.ship_interval_s,
        timeout_s=settings.ship_timeout_s,
        backoff_max_s=settings.ship_backoff_max_s,
        observation_log=ObservationLog(Path(settings.spool_dir) / "log", settings.observation_log_max_bytes),
        log_sync_s=settings.observation_log_sync_s,
    )


@dataclass(frozen=True, slots=True)
class _Reconfigure:
    """A new configuration file: new provider clients and targets, and the cache's new rules."""

    clients: _Clients
    table: TargetTable
    exclusions: CircuitExclusions
    circuits: Circuits
    cache: ResponseCache

    def build_targets(self, config: AtpConfig, providers: Mapping[str, Provider]) -> None:
        """Swap in the targets of `config` (requests in flight keep the table they started with)."""
        self.table.current = build_targets(
            config,
            providers,
            self.exclusions,
            self.circuits,
            quota=self.clients.limiter.backend,
            prefix=self.clients.prefix,
        )

    async def __call__(self, new: AtpConfig) -> None:
        updated = await self.clients.fleet.update(new)
        self.build_targets(new, updated)
        self.cache.configure(new)
