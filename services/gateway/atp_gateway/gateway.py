"""The gateway's shared state: configuration, key store, upstream clients and the drain flags."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from grpc import aio

from atp_common.channels import open_channel
from atp_common.config import AtpConfig
from atp_common.limits.directory import Directory, DirectoryFollower, follow_directory
from atp_gateway import metrics
from atp_gateway.asgi import BodyBudget
from atp_gateway.auth import KeyStore
from atp_gateway.cache_copy import CacheCopy
from atp_gateway.cache_reports import HitReporter
from atp_gateway.control import ControlClient
from atp_gateway.settings import GatewaySettings
from atp_gateway.upstream import AdaptersClient, ObserverClient

log = logging.getLogger("atp.gateway")

__all__ = ["Gateway"]


class Drainable(Protocol):
    """A long-lived connection (a WebSocket session) that finishes its work and closes on drain."""

    async def wait_closed(self) -> None: ...


class Gateway:
    """Everything the request handlers share. Built once per process; nothing here is per request."""

    def __init__(
        self,
        settings: GatewaySettings,
        config: AtpConfig,
        *,
        adapters_channel: aio.Channel | None = None,
        observer_channel: aio.Channel | None = None,
        key_store: KeyStore | None = None,
    ):
        self.settings = settings
        self.config = config
        self.body_budget = BodyBudget(settings.max_large_bodies_bytes)
        self.keys = key_store if key_store is not None else KeyStore.from_config(config)
        # Keys created, rotated or revoked through the admin API: a given key store is kept as it is.
        self.directory: DirectoryFollower | None = None
        if key_store is None:
            self.directory = follow_directory(settings, config, on_change=self._directory_changed)
        self.control: ControlClient | None = None
        directory = self.directory
        metrics.DIRECTORY_STORE_UP.set_function(lambda: 1 if directory is None or directory.healthy else 0)
        self._given_adapters_channel = adapters_channel
        self._given_observer_channel = observer_channel
        self._owned_channels: list[aio.Channel] = []
        self.adapters: AdaptersClient | None = None
        self.observer: ObserverClient | None = None
        self.started = False
        # Draining: readiness fails at once; serving continues until `stopping` (after the drain delay).
        self.draining = False
        self.stopping = asyncio.Event()
        self.websockets: set[Drainable] = set()
        self._static_directory: Directory | None = None
        self.cache_copy = CacheCopy(
            config,
            self._access_view,
            max_entries=settings.cache_copy_entries,
            max_bytes=settings.cache_copy_bytes,
            max_ttl_s=settings.cache_copy_ttl_s,
        )
        self.hit_reports: HitReporter | None = None

    def _access_view(self) -> Directory:
        """Limits and key model lists: the directory followed, else (a given key store) the configuration's."""
        if self.directory is not None:
            return self.directory.directory
        if self._static_directory is None:
            self._static_directory = Directory(self.config)
        return self._static_directory

    def _directory_changed(self, directory: Directory) -> None:
        # One attribute swap: requests in flight keep the store they started with.
        self.keys = KeyStore.from_directory(directory)

    @property
    def ready(self) -> bool:
        """Whether a balancer should send new work here."""
        return self.started and not self.draining and self.adapters is not None and self.adapters.serving

    async def start(self) -> None:
        """Open the channels (unless given) and start following the adapters' health."""
        if self.started:
            return
        adapters_channel = self._given_adapters_channel
        if adapters_channel is None:
            adapters_channel = open_channel(
                self.settings.adapters_addr,
                self.settings,
                reconnect_max_s=self.settings.adapters_reconnect_max_s,
            )
            self._owned_channels.append(adapters_channel)
        observer_channel = self._given_observer_channel
        if observer_channel is None:
            observer_channel = open_channel(self.settings.observer_addr, self.settings)
            self._owned_channels.append(observer_channel)
        self.adapters = AdaptersClient(
            adapters_channel,
            request_timeout_s=self.settings.request_timeout_s,
            control_timeout_s=self.settings.control_timeout_s,
            models_cache_s=self.settings.models_cache_s,
            # Traced requests are calls of their own, each with its spans.
            multiplex=not (self.settings.tracing or self.settings.otlp_endpoint),
        )
        self.observer = ObserverClient(observer_channel, control_timeout_s=self.settings.control_timeout_s)
        router_channel = open_channel(self.settings.router_addr, self.settings)
        self._owned_channels.append(router_channel)
        self.control = ControlClient(
            router_channel, observer_channel, timeout_s=self.settings.control_timeout_s
        )
        if self.directory is not None:
            # Bounded: a store that is down leaves the configuration's keys in force, and is retried.
            await self.directory.start()
        self.adapters.start()
        if self.cache_copy.enabled:
            self.hit_reports = HitReporter(
                self.adapters.report_cache_hits,
                batch=self.settings.cache_report_batch,
                interval_s=self.settings.cache_report_interval_s,
                max_bytes=self.settings.cache_report_max_bytes,
            )
            self.hit_reports.start()
        self.started = True

    def begin_drain(self) -> None:
        """Fail readiness from now on; requests are still served."""
        self.draining = True

    def stop_new_work(self) -> None:
        """Refuse new requests (WebSockets finish their in-flight ones and close with 1001)."""
        self.draining = True
        self.stopping.set()

    async def wait_websockets_closed(self, timeout_s: float) -> bool:
        """Wait until every WebSocket session has closed; False when `timeout_s` ran out first."""
        sessions = [asyncio.ensure_future(s.wait_closed()) for s in list(self.websockets)]
        if not sessions:
            return True
        _done, pending = await asyncio.wait(sessions, timeout=timeout_s)
        for task in pending:
            task.cancel()
        return not pending

    async def close(self) -> None:
        """Stop background work and close the channels this gateway opened."""
        reporter, self.hit_reports = self.hit_reports, None
        if reporter is not None:
            # Before the channel closes: the hits answered here reach the adapters (bounded).
            await reporter.close(self.settings.control_timeout_s)
        if self.adapters is not None:
            await self.adapters.close()
        if self.directory is not None:
            await self.directory.close()
        for channel in self._owned_channels:
            try:
                await channel.close()
            except Exception:
                log.exception("closing a channel failed")
        self._owned_channels.clear()
        self.started = False
