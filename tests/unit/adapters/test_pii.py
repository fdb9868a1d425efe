"""PII redaction in the adapters: stored prompts for tenants that ask; the forwarded request only on routes that ask."""

from __future__ import annotations

from pathlib import Path

import orjson
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig
from tests.fakes import running_fake_openai
from tests.fakes.observer import start_recording_observer
from tests.support.ports import free_port

PROMPT = "my card is 4111 1111 1111 1111 and my mail jane@example.com"
REDACTED = "my card is [CARD] and my mail [EMAIL]"


async def test_stored_prompts_and_upstream_redaction_follow_the_configuration(tmp_path: Path) -> None:
    async with running_fake_openai() as openai:
        config = AtpConfig.model_validate(
            {
                "providers": {"openai": {"type": "openai", "base_url": openai.base_url}},
                "models": {"gpt": {"provider": "openai"}},
                "routes": {
                    "auto": {"candidates": ["gpt"]},
                    "scrubbed": {"candidates": ["gpt"], "redact_pii_upstream": True},
                },
                "tenants": {
                    "private": {"store_prompts": True, "redact_pii": True},
                    "open": {"store_prompts": True},
                },
            }
        )
        observer, observer_server = await start_recording_observer()
        settings = AdaptersSettings(
            port=0,
            metrics_port=None,
            router_addr=f"127.0.0.1:{free_port()}",
            observer_addr=observer_server.address,
            spool_dir=str(tmp_path / "spool"),
            ship_interval_s=0.02,
        )
        adapters = await build_server(settings, config=config)
        channel = aio.insecure_channel(adapters.address)
        stub = adapters_pb2_grpc.AdaptersServiceStub(channel)

        async def call(request_id: str, tenant: str, route: str) -> str:
            request = adapters_pb2.GenerateRequest(
                request_id=request_id,
                tenant=tenant,
                model=route,
                messages=[chat_pb2.ChatMessage(role="user", content=PROMPT)],
            )
            _ = [r async for r in stub.Generate(request, timeout=5)]
            return openai.requests[-1].body["messages"][0]["content"]

        try:
            # Redaction of what is stored never touches the forwarded request.
            assert await call("r-private", "private", "auto") == PROMPT
            assert await call("r-open", "open", "auto") == PROMPT
            # A route that asks gets the redacted text upstream.
            assert await call("r-scrubbed", "open", "scrubbed") == REDACTED

            stored = await observer.wait_for("r-private")
            assert orjson.loads(stored.prompt_text) == [{"role": "user", "content": REDACTED}]
            stored = await observer.wait_for("r-open")
            assert orjson.loads(stored.prompt_text) == [{"role": "user", "content": PROMPT}]
        finally:
            await channel.close()
            await adapters.stop_now()
            await observer_server.stop_now()
