"""The adapters compute semantic features only for routes whose policy uses them."""

from __future__ import annotations

from pathlib import Path

from grpc import aio

from atp.adapters.v1 import adapters_pb2_grpc
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from atp_common.policy.artifact import default_semantic
from atp_common.policy.features import FEATURE_DIM
from tests.fakes.observer import start_recording_observer
from tests.support.adapters_suite import generate, request
from tests.support.ports import free_port


def _config() -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {
                "echo": {"provider": "local", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0},
                "echo-cheap": {"provider": "local", "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.1},
            },
            "routes": {
                "smart": {"candidates": ["echo", "echo-cheap"], "policy": "linucb", "semantic": True},
                "plain": {"candidates": ["echo", "echo-cheap"], "policy": "linucb"},
            },
            "default_route": "plain",
            "tenants": {"acme": {}},
        }
    )


async def test_semantic_features_are_appended_for_the_route_that_uses_them(tmp_path: Path) -> None:
    observer, observer_server = await start_recording_observer()
    settings = AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=observer_server.address,
        spool_dir=str(tmp_path / "spool"),
        ship_interval_s=0.02,
        drain_delay_s=0.05,
        grace_s=2.0,
    )
    adapters = await build_server(settings, config=_config())
    channel = aio.insecure_channel(adapters.address)
    try:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        question = "What is the derivative of the natural logarithm?"
        await generate(stub, request("smart", stream=False, text=question, request_id="smart-1"))
        await generate(stub, request("plain", stream=False, text=question, request_id="plain-1"))
        smart = (await observer.wait_for("smart-1")).decision.features.vector
        plain = (await observer.wait_for("plain-1")).decision.features.vector
        assert len(plain) == FEATURE_DIM
        assert len(smart) == FEATURE_DIM + default_semantic().semantic_dim
        assert list(smart[:FEATURE_DIM]) == list(plain) and any(v != 0.0 for v in smart[FEATURE_DIM:])
    finally:
        await channel.close()
        await adapters.stop_now()
        await observer_server.stop_now()
