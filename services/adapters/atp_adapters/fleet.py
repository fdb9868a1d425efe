"""The provider clients in force and their credentials; a configuration change rebuilds only what changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TypeAlias

from atp_adapters.providers import Provider, build_provider
from atp_adapters.providers.cloud_auth import RefreshingCredential, credential_for
from atp_adapters.secrets import SecretResolver
from atp_common import config as config_mod
from atp_common.config import AtpConfig
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.adapters.fleet")

ProviderConfig: TypeAlias = config_mod.LocalProvider | config_mod.HttpProvider


class ProviderFleet:
    """One client per configured provider, each with its secret or cloud credential.

    `update` keeps the clients whose configuration is unchanged (their connection pools, their
    credentials), builds the new ones (reading their secrets first: a missing one rejects the whole
    change) and retires the rest: a retired client is closed after `grace_s`, so requests still
    running on it finish on the settings they started with.
    """

    def __init__(self, secrets: SecretResolver, grace_s: float) -> None:
        self._secrets = secrets
        self._grace_s = grace_s
        self._configs: dict[str, ProviderConfig] = {}
        self.providers: dict[str, Provider] = {}
        self._credentials: dict[str, RefreshingCredential] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    async def update(self, config: AtpConfig) -> Mapping[str, Provider]:
        """The clients for `config`'s providers. Raises ConfigError (nothing changed) when a new
        provider's secret or credential cannot be had."""
        built: dict[str, Provider] = {}
        credentials: dict[str, RefreshingCredential] = {}
        try:
            for name, cfg in config.providers.items():
                if self._configs.get(name) == cfg:
                    continue
                credential = await self._credential(cfg)
                if credential is not None:
                    credentials[name] = credential
                secret = (
                    await self._secrets.ref(cfg.api_key) if isinstance(cfg, config_mod.HttpProvider) else None
                )
                built[name] = build_provider(name, cfg, secret=secret, credential=credential)
        except BaseException:
            for credential in credentials.values():
                await credential.close()
            for provider in built.values():
                await provider.close()
            raise
        gone = [name for name in self._configs if config.providers.get(name) != self._configs[name]]
        for name in gone:
            self._retire(self.providers.pop(name), self._credentials.pop(name, None))
        self.providers.update(built)
        self._credentials.update(credentials)
        self._configs = dict(config.providers)
        return self.providers

    async def _credential(self, cfg: ProviderConfig) -> RefreshingCredential | None:
        if not isinstance(cfg, config_mod.HttpProvider):
            return None
        client_secret = (
            (await self._secrets.ref(cfg.entra_client_secret)).value if cfg.entra_client_secret else ""
        )
        credential = credential_for(cfg, client_secret)
        if credential is not None:
            await credential.start()
        return credential

    def _retire(self, provider: Provider, credential: RefreshingCredential | None) -> None:
        async def close_later() -> None:
            try:
                await asyncio.sleep(self._grace_s)
            finally:
                await provider.close()
                if credential is not None:
                    await credential.close()

        task = asyncio.create_task(close_later(), name="retire-provider")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Close every client and credential now, the retiring ones included."""
        await cancel_and_wait(*self._retiring)
        for provider in self.providers.values():
            await provider.close()
        for credential in self._credentials.values():
            await credential.close()
        self.providers.clear()
        self._credentials.clear()
