"""Builds the adapters server: providers, policy watch, observation shipping and the servicer, wired once."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp_adapters.admission import Admission
from atp_adapters.circuit_exclusions import CircuitExclusions
from atp_adapters.circuit_reporter import CircuitReporter
from atp_adapters.embed import EmbedPipeline
from atp_adapters.pipeline import GeneratePipeline, Target
from atp_adapters.policy_watch import PolicyHolder, PolicyWatcher
from atp_adapters.pricing import Prices
from atp_adapters.providers import Provider, build_provider
from atp_adapters.resilience import Circuits, RetryPolicy
from atp_adapters.servicer import AdaptersServicer
from atp_adapters.settings import AdaptersSettings
from atp_adapters.shipper import ObservationShipper
from atp_adapters.spool import Spool
from atp_common import config as config_mod
from atp_common.channels import open_channel
from atp_common.config import AtpConfig, load_config
from atp_common.limits import open_limiter
from atp_common.limits.directory import DirectoryFollower, open_directory_store
from atp_common.policy.kernel import CompiledPolicy
from atp_common.secrets import SecretResolver
from atp_common.server import RunningServer, ServiceRegistration, start_server

log = logging.getLogger("atp.adapters")

SERVICE_NAME = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
# Share of close_timeout_s the shipper may spend delivering at drain; the rest is for spooling and closing.
_FLUSH_SHARE = 0.6
# The built-in provider cannot fail the way a remote one does: no retries, default breaker settings.
_LOCAL_RETRY = RetryPolicy(max_retries=0)
_LOCAL_CIRCUIT = (5, 30.0)


def build_targets(
    config: AtpConfig,
    providers: Mapping[str, Provider],
    exclusions: CircuitExclusions,
    circuits: Circuits,
) -> dict[str, Target]:
    """One Target per configured model: its provider client, prices, retry policy and circuit."""
    targets: dict[str, Target] = {}
    for name, model in config.models.items():
        provider_cfg = config.providers[model.provider]
        if isinstance(provider_cfg, config_mod.HttpProvider):
            retry = RetryPolicy.from_config(provider_cfg)
            failures, open_s = provider_cfg.circuit_failures, provider_cfg.circuit_open_s
        else:
            retry = _LOCAL_RETRY
            failures, open_s = _LOCAL_CIRCUIT
        breaker = circuits.breaker(model.provider, name, failures, open_s)
        targets[name] = Target(
            model=name,
            provider_name=model.provider,
            provider=providers[model.provider],
            provider_model=config.provider_model(name),
            prices=Prices.of(model),
            retry=retry,
            circuit=exclusions.circuit(name, breaker),
        )
    return targets


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
    background so that a rotated key is used without a restart.
    """
    config = config if config is not None else load_config(settings.config_path)
    owns_secrets = secrets is None
    secrets = secrets if secrets is not None else SecretResolver.from_settings()
    try:
        keys = {
            name: await secrets.ref(cfg.api_key)
            for name, cfg in config.providers.items()
            if isinstance(cfg, config_mod.HttpProvider)
        }
    except BaseException:
        if owns_secrets:
            await secrets.close()
        raise
    # Built once and reused by every request: each HTTP provider owns a pooled keep-alive session.
    providers = {
        name: build_provider(name, cfg, secret=keys.get(name)) for name, cfg in config.providers.items()
    }
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
    targets = build_targets(config, providers, exclusions, Circuits())

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
    )
    limiter = open_limiter(
        settings.redis_url,
        prefix=settings.redis_prefix,
        fail_mode=settings.limits_fail_mode,
        timeout_s=settings.limits_timeout_s,
    )
    directory = DirectoryFollower(
        config,
        open_directory_store(settings.redis_url, prefix=settings.redis_prefix, path=settings.directory_path),
        poll_s=settings.directory_poll_s,
    )
    admission = Admission(limiter, directory, targets, default_output_tokens=settings.default_output_tokens)
    pipeline = GeneratePipeline(
        config,
        holder,
        targets,
        shipper,
        replica_id=settings.replica_id,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
    )
    embedder = EmbedPipeline(
        holder,
        targets,
        pipeline.recorder,
        default_tenant=settings.default_tenant,
        request_timeout_s=settings.request_timeout_s,
        rng=rng,
        admission=admission,
    )
    servicer = AdaptersServicer(pipeline, holder, targets.keys(), embedder)

    async def close_providers() -> None:
        for provider in providers.values():
            await provider.close()

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
        await close_providers()
        await limiter.close()
        await directory.close()
        await router_channel.close()
        await observer_channel.close()
        if owns_secrets:
            await secrets.close()
        raise
    secrets.start()
    watcher.start()
    # The first directory load is bounded; a store that is down leaves the configuration's tenants in force.
    await directory.start()
    limiter.start()
    reporter.start()
    shipper.start()
    # After server.stop(grace) every in-flight request has submitted its observation: stop following the
    # router, deliver (or spool) the queue, then release connections.
    running.add_closer("policy watch", watcher.close)
    running.add_closer("circuit reporter", reporter.close)
    running.add_closer("observation shipper", lambda: shipper.close(settings.close_timeout_s * _FLUSH_SHARE))
    running.add_closer("limits", lambda: limiter.close(settings.close_timeout_s * 0.2))
    running.add_closer("directory", directory.close)
    running.add_closer("providers", close_providers)
    running.add_closer("router channel", router_channel.close)
    running.add_closer("observer channel", observer_channel.close)
    if owns_secrets:
        running.add_closer("secrets", secrets.close)
    # Tests and diagnostics reach the parts through the running server.
    running.adapters = AdaptersParts(  # type: ignore[attr-defined]
        holder, watcher, shipper, exclusions, targets, reporter
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
        targets: Mapping[str, Target],
        reporter: CircuitReporter,
    ) -> None:
        self.holder = holder
        self.watcher = watcher
        self.shipper = shipper
        self.exclusions = exclusions
        self.targets = targets
        self.reporter = reporter
