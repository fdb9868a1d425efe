"""Provider clients: the data plane's edge to LLM providers, behind one small streaming contract."""

from __future__ import annotations

from atp_adapters.providers.anthropic import AnthropicProvider
from atp_adapters.providers.base import (
    FinishReason,
    Provider,
    ProviderBatch,
    ProviderError,
    ProviderRequest,
    unsupported,
)
from atp_adapters.providers.gemini import GeminiProvider
from atp_adapters.providers.local import LocalProvider, count_prompt_tokens
from atp_adapters.providers.openai import OpenAIProvider
from atp_adapters.providers.secrets import SecretResolver, resolve_secret
from atp_common import config

__all__ = [
    "AnthropicProvider",
    "FinishReason",
    "GeminiProvider",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderBatch",
    "ProviderError",
    "ProviderRequest",
    "SecretResolver",
    "build_provider",
    "count_prompt_tokens",
    "resolve_secret",
    "unsupported",
]

_HTTP_PROVIDERS: dict[str, type[OpenAIProvider | AnthropicProvider | GeminiProvider]] = {
    "openai": OpenAIProvider,
    "azure": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


def build_provider(
    name: str,
    cfg: config.LocalProvider | config.HttpProvider,
    secret_resolver: SecretResolver = resolve_secret,
) -> Provider:
    """The provider client for one configured provider, its key resolved now (a missing secret is a
    ConfigError at start-up, not a failure on the first request)."""
    if isinstance(cfg, config.LocalProvider):
        return LocalProvider(cfg, name)
    return _HTTP_PROVIDERS[cfg.type](cfg, secret_resolver(cfg.api_key), name)
