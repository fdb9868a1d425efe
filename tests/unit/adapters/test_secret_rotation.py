"""Provider keys from Vault: a running adapters server picks up a rotated key without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.secrets import SecretResolver, VaultBackend, VaultSettings
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.errors import ConfigError
from tests.fakes import FakeOpenAI, running_fake_openai
from tests.fakes.vault import FakeVault, running_fake_vault

PATH = "atp/providers"
REF = f"vault:{PATH}#openai"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_for(openai: FakeOpenAI) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"openai": {"type": "openai", "base_url": openai.base_url, "api_key": REF}},
            "models": {"gpt": {"provider": "openai"}},
            "routes": {"auto": {"candidates": ["gpt"]}},
        }
    )


def resolver_for(vault: FakeVault, **overrides: float) -> SecretResolver:
    settings = VaultSettings(addr=vault.addr, role_id="adapters", secret_id="s3cret", timeout_s=1.0)
    return SecretResolver(
        VaultBackend(settings),
        cache_ttl_s=overrides.get("cache_ttl_s", 3600.0),
        min_refresh_s=overrides.get("min_refresh_s", 0.0),
    )


@contextlib.asynccontextmanager
async def adapters_with(
    tmp_path: Path, openai: FakeOpenAI, secrets: SecretResolver
) -> AsyncIterator[adapters_pb2_grpc.AdaptersServiceStub]:
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=f"127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "spool"),
        default_tenant="acme",
        drain_delay_s=0.05,
        grace_s=1.0,
    )
    running = await build_server(settings, config=config_for(openai), secrets=secrets)
    channel = aio.insecure_channel(running.address)
    try:
        yield adapters_pb2_grpc.AdaptersServiceStub(channel)
    finally:
        await channel.close()
        await running.stop_now()
        await secrets.close()


async def ask(stub: adapters_pb2_grpc.AdaptersServiceStub) -> str:
    request = adapters_pb2.GenerateRequest(
        model="auto", messages=[chat_pb2.ChatMessage(role="user", content="hi")], stream=True
    )
    replies = [reply async for reply in stub.Generate(request, timeout=5)]
    return "".join(d.content for r in replies for d in r.deltas)


async def test_a_rotated_key_is_used_after_the_cache_refresh_without_a_restart(tmp_path: Path) -> None:
    async with (
        running_fake_vault(approles={"adapters": "s3cret"}) as vault,
        running_fake_openai() as openai,
    ):
        vault.put(PATH, {"openai": "sk-one"})
        openai.api_key = "sk-one"
        async with adapters_with(tmp_path, openai, resolver_for(vault, cache_ttl_s=0.2)) as stub:
            assert await ask(stub)
            assert openai.requests[-1].headers["Authorization"] == "Bearer sk-one"

            # Rotation as operators do it: the new key is written to Vault, then the old one revoked.
            vault.put(PATH, {"openai": "sk-two"})
            reads = vault.reads(PATH)
            deadline = time.monotonic() + 5
            while vault.reads(PATH) < reads + 2:  # a whole refresh round has read the new version
                assert time.monotonic() < deadline, "the secret was never re-read"
                await asyncio.sleep(0.02)
            openai.api_key = "sk-two"
            assert await ask(stub)
            assert openai.requests[-1].headers["Authorization"] == "Bearer sk-two"
            assert vault.logins == {"approle": 1}


async def test_a_key_revoked_before_the_cache_expires_is_re_read_after_a_401(tmp_path: Path) -> None:
    async with (
        running_fake_vault(approles={"adapters": "s3cret"}) as vault,
        running_fake_openai() as openai,
    ):
        vault.put(PATH, {"openai": "sk-one"})
        openai.api_key = "sk-one"
        async with adapters_with(tmp_path, openai, resolver_for(vault)) as stub:
            assert await ask(stub)
            vault.put(PATH, {"openai": "sk-two"})
            openai.api_key = "sk-two"  # revoked at the provider first; our cache is good for an hour
            with pytest.raises(aio.AioRpcError) as refused:
                await ask(stub)
            assert refused.value.code() != grpc.StatusCode.OK
            assert openai.requests[-1].headers["Authorization"] == "Bearer sk-one"
            # The 401 asked the resolver for the key again: the next calls use the new one.
            deadline = time.monotonic() + 5
            while True:
                with contextlib.suppress(aio.AioRpcError):
                    if await ask(stub):
                        break
                assert time.monotonic() < deadline, "the rotated key was never picked up"
                await asyncio.sleep(0.05)
            assert openai.requests[-1].headers["Authorization"] == "Bearer sk-two"


async def test_an_unreachable_vault_fails_the_start_with_a_clear_error(tmp_path: Path) -> None:
    async with running_fake_openai() as openai:
        settings = VaultSettings(addr=f"http://127.0.0.1:{free_port()}", token="t", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ConfigError, match="cannot reach"):
            async with adapters_with(tmp_path, openai, SecretResolver.from_settings(settings)):
                pass
        assert time.monotonic() - started < 3
