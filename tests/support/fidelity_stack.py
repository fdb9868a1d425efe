"""An adapters server on port 0 in front of a fake OpenAI (and Azure) on loopback, for the fidelity tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2_grpc
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.server import RunningServer
from tests.fakes import FakeOpenAI
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.ports import free_port

ALL_CAPABILITIES = ["streaming", "tools", "json", "vision", "audio", "files", "reasoning"]


def make_config(fake: FakeOpenAI) -> AtpConfig:
    root = fake.base_url.removesuffix("/v1")
    return AtpConfig.model_validate(
        {
            "providers": {
                "oa": {
                    "type": "openai",
                    "base_url": fake.base_url,
                    "api_key": "env:FIDELITY_OA_KEY",
                    "max_retries": 0,
                },
                "az": {
                    "type": "azure",
                    "base_url": root,
                    "api_key": "env:FIDELITY_AZ_KEY",
                    "api_version": "2025-01-01",
                },
                "local": {"type": "local"},
            },
            "models": {
                "gpt": {"provider": "oa", "provider_model": "gpt-up", "capabilities": ALL_CAPABILITIES},
                "az-gpt": {"provider": "az", "provider_model": "dep-1", "capabilities": ALL_CAPABILITIES},
                "emb": {
                    "provider": "oa",
                    "provider_model": "text-embedding-3-small",
                    "input_usd_per_mtok": 0.02,
                    "capabilities": ["embeddings"],
                },
                "az-emb": {"provider": "az", "provider_model": "emb-dep", "capabilities": ["embeddings"]},
                "echo": {"provider": "local", "capabilities": ["streaming", "tools", "json"]},
                "echo-embed": {"provider": "local", "capabilities": ["embeddings"]},
            },
            "routes": {
                "auto": {"candidates": ["echo"]},
                "mixed": {"candidates": ["echo-embed", "gpt"]},
                "embed": {"candidates": ["emb", "echo-embed"]},
            },
            "tenants": {
                "acme": {"store_prompts": True},
                "narrow": {"allowed_models": ["echo", "emb"]},
                "no-gpt": {"denied_models": ["gpt", "az-gpt"]},
                "metered": {"requests_per_minute": 1},
            },
        }
    )


@dataclass
class Suite:
    stub: adapters_pb2_grpc.AdaptersServiceStub
    fake: FakeOpenAI
    observer: RecordingObserver


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Suite]:
    """The adapters with OpenAI, Azure and local models (chat and embeddings) and three tenants."""
    monkeypatch.setenv("FIDELITY_OA_KEY", "sk-test")
    monkeypatch.setenv("FIDELITY_AZ_KEY", "az-key")
    fake = FakeOpenAI()
    await fake.start()
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        directory_path=str(tmp_path / "tenants.json"),
        ship_interval_s=0.02,
        drain_delay_s=0.05,
        grace_s=2.0,
    )
    adapters: RunningServer = await build_server(settings, config=make_config(fake))
    channel = aio.insecure_channel(adapters.address)
    try:
        yield Suite(adapters_pb2_grpc.AdaptersServiceStub(channel), fake, observer)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
        await fake.stop()
