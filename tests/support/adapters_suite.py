"""A real adapters server on port 0 between two fake OpenAI providers and a recording observer, and calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.server import RunningServer
from tests.fakes import FakeOpenAI
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.ports import free_port


def make_config(primary: FakeOpenAI, secondary: FakeOpenAI, **primary_overrides) -> AtpConfig:
    http = {"retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05, "circuit_open_s": 0.5}
    return AtpConfig.model_validate(
        {
            "providers": {
                "local": {"type": "local"},
                "primary": {"type": "openai", "base_url": primary.base_url, **http, **primary_overrides},
                "secondary": {"type": "openai", "base_url": secondary.base_url, **http},
            },
            "models": {
                "m-a": {
                    "provider": "primary",
                    "provider_model": "upstream-a",
                    "input_usd_per_mtok": 3.0,
                    "cached_input_usd_per_mtok": 0.3,
                    "output_usd_per_mtok": 15.0,
                    "reasoning_usd_per_mtok": 60.0,
                    "context_window": 100_000,
                },
                "m-b": {"provider": "secondary", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
                "echo": {"provider": "local", "context_window": 4096},
            },
            "routes": {
                "chain": {"candidates": ["m-a", "m-b"]},
                "auto": {"candidates": ["echo"]},
            },
            "default_route": "auto",
            "tenants": {"acme": {"store_prompts": True}},
        }
    )


@dataclass
class Suite:
    adapters: RunningServer
    stub: adapters_pb2_grpc.AdaptersServiceStub
    observer: RecordingObserver
    primary: FakeOpenAI
    secondary: FakeOpenAI


@contextlib.asynccontextmanager
async def running_suite(
    tmp_path: Path, observer_addr: str | None = None, **primary_overrides
) -> AsyncIterator[Suite]:
    """The adapters with two fake providers and a recording observer (or `observer_addr` instead)."""
    primary, secondary = FakeOpenAI(), FakeOpenAI()
    await primary.start()
    await secondary.start()
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",  # no router: the configured static order applies
        observer_addr=observer_addr or observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        ship_interval_s=0.02,
        drain_delay_s=0.05,
        grace_s=2.0,
    )
    adapters = await build_server(settings, config=make_config(primary, secondary, **primary_overrides))
    channel = aio.insecure_channel(adapters.address)
    try:
        yield Suite(adapters, adapters_pb2_grpc.AdaptersServiceStub(channel), observer, primary, secondary)
    finally:
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
        await primary.stop()
        await secondary.stop()


def request(
    model: str = "chain", *, stream: bool, text: str = "hello there", **fields
) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        request_id=fields.pop("request_id", f"req-{time.monotonic_ns()}"),
        tenant=fields.pop("tenant", "acme"),
        model=model,
        messages=[chat_pb2.ChatMessage(role="user", content=text)],
        stream=stream,
        **fields,
    )


async def generate(stub, req) -> list[adapters_pb2.GenerateResponse]:
    return [response async for response in stub.Generate(req, timeout=10)]


def text_of(responses: list[adapters_pb2.GenerateResponse]) -> str:
    return "".join(d.content for r in responses for d in r.deltas)
