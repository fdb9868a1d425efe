"""Deployments end to end: quotas across replicas on Redis, latency and 429 steering, regions, hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from tests.fakes import FakeOpenAI, FakeReply, Faults
from tests.fakes.observer import RecordingObserver, start_recording_observer
from tests.support.ports import free_port

HTTP = {"max_retries": 0, "circuit_failures": 50}


def config_dict(eu: FakeOpenAI, us: FakeOpenAI, strategy: str, **deployment: Any) -> dict[str, Any]:
    return {
        "providers": {
            "dep-eu": {"type": "openai", "base_url": eu.base_url, "region": "eu-west-1", **HTTP},
            "dep-us": {"type": "openai", "base_url": us.base_url, "region": "us-east-1", **HTTP},
        },
        "models": {
            "gpt": {
                "deployments": [
                    {"provider": "dep-eu", "provider_model": "gpt-eu", **deployment},
                    {"provider": "dep-us", "provider_model": "gpt-us", **deployment},
                ],
                "strategy": strategy,
            }
        },
        "routes": {"auto": {"candidates": ["gpt"]}},
        "tenants": {"acme": {}, "eu-tenant": {"regions": ["eu-*"]}},
    }


@contextlib.asynccontextmanager
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    eu, us = FakeOpenAI(), FakeOpenAI()
    await eu.start()
    await us.start()
    try:
        yield eu, us
    finally:
        await eu.stop()
        await us.stop()


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, config: AtpConfig | None, count: int = 1, **settings: Any
) -> AsyncIterator[tuple[list[adapters_pb2_grpc.AdaptersServiceStub], RecordingObserver]]:
    observer, observer_server = await start_recording_observer()
    servers, channels = [], []
    try:
        for i in range(count):
            server = await build_server(
                AdaptersSettings(
                    port=0,
                    metrics_port=None,
                    router_addr=f"127.0.0.1:{free_port()}",
                    observer_addr=observer_server.address,
                    spool_dir=str(tmp_path / f"spool-{i}"),
                    ship_interval_s=0.02,
                    drain_delay_s=0.01,
                    grace_s=1.0,
                    replica_id=f"replica-{i}",
                    **settings,
                ),
                config=config,
            )
            servers.append(server)
            channels.append(aio.insecure_channel(server.address))
        yield [adapters_pb2_grpc.AdaptersServiceStub(c) for c in channels], observer
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop_now()
        await observer_server.stop_now()


def request(tenant: str = "acme", regions: tuple[str, ...] = ()) -> adapters_pb2.CompleteRequest:
    return adapters_pb2.CompleteRequest(
        request=adapters_pb2.GenerateRequest(
            tenant=tenant,
            model="auto",
            messages=[chat_pb2.ChatMessage(role="user", content="hello")],
            regions=regions,
        )
    )


async def test_quotas_hold_across_two_replicas_on_redis(tmp_path: Path, redis_url: str) -> None:
    async with fakes() as (eu, us):
        config = AtpConfig.model_validate(config_dict(eu, us, "quota_aware", rpm=60))
        prefix = f"atp-test-{secrets.token_hex(4)}:"
        async with replicas(tmp_path, config, 2, redis_url=redis_url, redis_prefix=prefix) as (stubs, _):
            outcomes = await asyncio.gather(
                *(stubs[i % 2].Complete(request(), timeout=10) for i in range(150)), return_exceptions=True
            )
    served = [o for o in outcomes if isinstance(o, adapters_pb2.CompleteResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(served) == 120
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED} and len(refused) == 30
    assert len(eu.requests) == 60 and len(us.requests) == 60
    assert {o.response.header.deployment for o in served} == {"dep-eu/gpt-eu", "dep-us/gpt-us"}


async def test_latency_moves_traffic_off_a_deployment_whose_first_token_slows(tmp_path: Path) -> None:
    async with fakes() as (eu, us):
        eu.faults = us.faults = Faults(hang_s=0.05)
        config = AtpConfig.model_validate(config_dict(eu, us, "latency"))
        async with replicas(tmp_path, config) as (stubs, _):
            for _ in range(6):
                await stubs[0].Complete(request(), timeout=10)
            eu.faults = Faults(hang_s=0.5)
            served = [
                (await stubs[0].Complete(request(), timeout=10)).response.header.provider for _ in range(20)
            ]
    assert served[-10:].count("dep-us") >= 9


async def test_a_429_moves_traffic_to_the_other_deployment_without_a_client_error(tmp_path: Path) -> None:
    async with fakes() as (eu, us):
        eu.faults = Faults(status=429, retry_after="30")
        config = AtpConfig.model_validate(config_dict(eu, us, "weighted"))
        async with replicas(tmp_path, config) as (stubs, _):
            replies = [await stubs[0].Complete(request(), timeout=10) for _ in range(20)]
    assert all(r.response.HasField("completion") for r in replies)
    assert len(eu.requests) == 1 and len(us.requests) == 20


async def test_a_tenant_held_to_eu_never_reaches_a_us_deployment(tmp_path: Path) -> None:
    async with fakes() as (eu, us):
        config = AtpConfig.model_validate(config_dict(eu, us, "weighted"))
        async with replicas(tmp_path, config) as (stubs, observer):
            replies = [await stubs[0].Complete(request("eu-tenant"), timeout=10) for _ in range(12)]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs[0].Complete(request("eu-tenant", ("us-*",)), timeout=10)
            narrowed = await stubs[0].Complete(request("acme", ("us-*",)), timeout=10)
            observation = await observer.wait_for(replies[0].response.header.request_id)
    assert {r.response.header.region for r in replies} == {"eu-west-1"}
    assert len(us.requests) == 1 and narrowed.response.header.region == "us-east-1"
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "region filter: eu-*" in observation.decision.explanation
    assert observation.region == "eu-west-1" and observation.deployment == "dep-eu/gpt-eu"


async def test_adding_a_deployment_under_load_loses_no_request(tmp_path: Path) -> None:
    async with fakes() as (eu, us):
        eu.reply = us.reply = FakeReply(text="ok")
        first = config_dict(eu, us, "weighted")
        first["models"]["gpt"]["deployments"].pop()  # only the EU deployment at first
        path = tmp_path / "atp.yaml"
        path.write_text(yaml.safe_dump(first))
        async with replicas(tmp_path, None, config_path=str(path), config_poll_s=0.05) as (stubs, _):
            done = asyncio.Event()
            results: list[bool] = []

            async def client() -> None:
                while not done.is_set():
                    reply = await stubs[0].Complete(request(), timeout=10)
                    results.append(reply.response.HasField("completion"))

            clients = [asyncio.create_task(client()) for _ in range(20)]
            await asyncio.sleep(0.3)
            path.write_text(yaml.safe_dump(config_dict(eu, us, "weighted")))
            for _ in range(100):
                if us.requests:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            done.set()
            await asyncio.gather(*clients)
    assert us.requests, "the new deployment never took traffic"
    assert results and all(results)
