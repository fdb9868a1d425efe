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
from atp_adapters.providers.secrets import SyncSecretResolver, resolve_secret
from atp_common import config
from atp_common.secrets import SecretRef

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
    "SyncSecretResolver",
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
    secret_resolver: SyncSecretResolver = resolve_secret,
    *,
    secret: SecretRef | None = None,
) -> Provider:
    """The provider client for one configured provider.

    Servers pass `secret`, the live key from atp_common.secrets.SecretResolver (resolved at start-up and
    kept current through rotation). Without it the key is resolved now through `secret_resolver` and
    stays fixed. Either way a missing secret is a ConfigError at start-up, not on the first request.
    """
    if isinstance(cfg, config.LocalProvider):
        return LocalProvider(cfg, name)
    key = secret if secret is not None else secret_resolver(cfg.api_key)
    return _HTTP_PROVIDERS[cfg.type](cfg, key, name)
