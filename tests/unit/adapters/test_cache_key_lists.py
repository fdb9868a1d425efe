"""A cached reply is served only to a key, and a tenant, whose model lists allow the model that produced it."""

from __future__ import annotations

import copy
from pathlib import Path

from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig, hash_api_key
from atp_common.limits.directory import config_key_id
from atp_common.policy import snapshot_from_config
from tests.support.ports import free_port

ONLY_A, ONLY_B = hash_api_key("sk-only-model-a-000001"), hash_api_key("sk-only-model-b-000001")
CONFIG = {
    "providers": {"local": {"type": "local"}},
    "models": {"a": {"provider": "local"}, "b": {"provider": "local"}},
    "routes": {"mixed": {"candidates": ["a", "b"], "cache": {"ttl_s": 30}}},
    "default_route": "mixed",
    "tenants": {
        "acme": {
            "api_keys": [
                {"hash": ONLY_A, "name": "only-a", "allowed_models": ["a"]},
                {"hash": ONLY_B, "name": "only-b", "denied_models": ["a"]},
            ]
        }
    },
}


def _request(key_hash: str = "", text: str = "the same question") -> adapters_pb2.CompleteRequest:
    return adapters_pb2.CompleteRequest(
        request=adapters_pb2.GenerateRequest(
            tenant="acme",
            model="mixed",
            key_id=config_key_id(key_hash.removeprefix("sha256:")) if key_hash else "",
            messages=[chat_pb2.ChatMessage(role="user", content=text)],
            params=chat_pb2.GenerationParams(temperature=0),
        )
    )


def _settings(tmp_path: Path, **fields: object) -> AdaptersSettings:
    return AdaptersSettings(
        port=0,
        metrics_port=None,
        router_addr=f"127.0.0.1:{free_port()}",
        observer_addr=f"127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "spool"),
        drain_delay_s=0,
        grace_s=1,
        **fields,
    )


async def test_a_key_never_gets_a_reply_of_a_model_its_lists_exclude(tmp_path: Path) -> None:
    adapters = await build_server(_settings(tmp_path), config=AtpConfig.model_validate(CONFIG))
    channel = aio.insecure_channel(adapters.address)
    try:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        first = (await stub.Complete(_request(ONLY_A), timeout=5)).response.header
        again = (await stub.Complete(_request(ONLY_A), timeout=5)).response.header
        other = (await stub.Complete(_request(ONLY_B), timeout=5)).response.header
    finally:
        await channel.close()
        await adapters.stop_now()
    assert (first.model, first.cache, again.model, again.cache) == ("a", "miss", "a", "hit")
    # The same request (same tenant, same key in the cache): the stored reply is model a's, which this
    # key may not use, so it is answered by the model its lists allow.
    assert other.model == "b" and other.cache != "hit"


async def test_a_model_the_tenant_is_denied_later_no_longer_answers_from_the_cache(tmp_path: Path) -> None:
    def config(denied: str) -> AtpConfig:
        changed = copy.deepcopy(CONFIG)
        changed["tenants"] = {"acme": {"denied_models": [denied]}}
        return AtpConfig.model_validate(changed)

    adapters = await build_server(_settings(tmp_path), config=config("b"))
    channel = aio.insecure_channel(adapters.address)
    try:
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        first = (await stub.Complete(_request(), timeout=5)).response.header
        again = (await stub.Complete(_request(), timeout=5)).response.header
        # The router publishes the tenant's new lists (an admin change or a new configuration file).
        adapters.parts.holder.set_snapshot(snapshot_from_config(config("a"), version=2))
        after = (await stub.Complete(_request(), timeout=5)).response.header
    finally:
        await channel.close()
        await adapters.stop_now()
    assert (first.model, first.cache, again.model, again.cache) == ("a", "miss", "a", "hit")
    assert after.model == "b" and after.cache != "hit"
