"""The gateway over the real adapters and fake OpenAI, Anthropic and Gemini servers, for the SDK tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from atp_common.config import LOCAL_TENANT, AtpConfig, hash_api_key
from atp_gateway.serve import GatewayServer
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from tests.support.stack import adapters_and_gateway

__all__ = ["ANTHROPIC_KEY", "DialectStack", "anthropic_sdk", "dialect_stack", "dialects", "openai_sdk"]

# The key the adapters send the fake Anthropic (it refuses a count without one, as the real service does).
ANTHROPIC_KEY_ENV = "ATP_TEST_ANTHROPIC_KEY"
ANTHROPIC_KEY = "sk-ant-test-dialects"


@dataclass
class DialectStack:
    gateway: GatewayServer
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"


def _config(openai: FakeOpenAI, anthropic: FakeAnthropic, gemini: FakeGemini, api_key: str) -> AtpConfig:
    fast = {"max_retries": 0, "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05}
    everything = ["streaming", "json", "tools", "vision", "files", "reasoning"]
    return AtpConfig.model_validate(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": openai.base_url, **fast},
                "anthropic": {
                    "type": "anthropic",
                    "base_url": anthropic.base_url,
                    "api_key": f"env:{ANTHROPIC_KEY_ENV}",
                    **fast,
                },
                "gemini": {"type": "gemini", "base_url": gemini.base_url, **fast},
                # Azure (on the OpenAI fake's deployment path): a provider ATP cannot count tokens with.
                "azure": {
                    "type": "azure",
                    "base_url": openai.base_url.removesuffix("/v1"),
                    "api_version": "2025-01-01",
                    **fast,
                },
            },
            "models": {
                # The one model with a configured window: the others' are unknown, so routing leaves it to
                # the provider.
                "gpt": {
                    "provider": "openai",
                    "provider_model": "gpt-upstream",
                    "capabilities": everything,
                    "context_window": 128_000,
                    "max_output_tokens": 16_384,
                },
                "claude": {
                    "provider": "anthropic",
                    "provider_model": "claude-upstream",
                    "capabilities": everything,
                },
                "az": {"provider": "azure", "provider_model": "dep-1", "capabilities": everything},
                # One of Claude's newest models: it takes only adaptive thinking, and temperature or top_p.
                "claude-new": {
                    "provider": "anthropic",
                    "provider_model": "claude-new-upstream",
                    "capabilities": everything,
                    "thinking": "adaptive",
                    "sampling": "temperature_or_top_p",
                },
                "gem": {
                    "provider": "gemini",
                    "provider_model": "gemini-upstream",
                    "capabilities": everything,
                },
            },
            "routes": {
                "mixed": {"candidates": ["claude", "gpt"]},
                "azure-first": {"candidates": ["az", "claude"], "policy": "static"},
                "claude-first": {"candidates": ["claude", "gpt"], "policy": "static"},
            },
            "default_route": "mixed",
            "tenants": {LOCAL_TENANT: {"api_keys": [{"hash": hash_api_key(api_key), "name": "t"}]}},
        }
    )


@contextlib.asynccontextmanager
async def dialect_stack(tmp_path: Path, observer_addr: str, api_key: str) -> AsyncIterator[DialectStack]:
    """Start the fakes, the adapters and the gateway; stop them all."""
    os.environ[ANTHROPIC_KEY_ENV] = ANTHROPIC_KEY
    openai, anthropic, gemini = FakeOpenAI(), FakeAnthropic(), FakeGemini()
    async with contextlib.AsyncExitStack() as stack:
        for fake in (openai, anthropic, gemini):
            await fake.start()
            stack.push_async_callback(fake.stop)
        gateway = await stack.enter_async_context(
            adapters_and_gateway(
                _config(openai, anthropic, gemini, api_key), tmp_path, observer_addr=observer_addr
            )
        )
        yield DialectStack(gateway, openai, anthropic, gemini)


@pytest.fixture
async def dialects(observer, tmp_path: Path, api_key: str) -> AsyncIterator[DialectStack]:
    """The running stack (a pytest plugin fixture: conftest registers this module)."""
    async with dialect_stack(tmp_path, observer[0].address, api_key) as running:
        yield running


@pytest.fixture
async def anthropic_sdk(dialects: DialectStack, api_key: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The official Anthropic SDK against the stack's gateway, without retries."""
    sdk = anthropic.AsyncAnthropic(base_url=dialects.base_url, api_key=api_key, max_retries=0, timeout=10)
    yield sdk
    await sdk.close()


@pytest.fixture
async def openai_sdk(dialects: DialectStack, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK against the stack's gateway, without retries."""
    sdk = openai.AsyncOpenAI(base_url=dialects.base_url + "/v1", api_key=api_key, max_retries=0, timeout=10)
    yield sdk
    await sdk.close()
