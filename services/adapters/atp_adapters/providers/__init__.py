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
from atp_adapters.providers.bedrock import BedrockProvider
from atp_adapters.providers.cloud_auth import RefreshingCredential
from atp_adapters.providers.gemini import GeminiProvider
from atp_adapters.providers.local import LocalProvider, count_prompt_tokens
from atp_adapters.providers.openai import OpenAIProvider
from atp_adapters.providers.secrets import SyncSecretResolver, resolve_secret
from atp_adapters.providers.vertex import VertexAnthropicProvider, VertexGeminiProvider
from atp_adapters.secrets import SecretRef
from atp_common import config
from atp_common.errors import ConfigError

__all__ = [
    "AnthropicProvider",
    "BedrockProvider",
    "FinishReason",
    "GeminiProvider",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderBatch",
    "ProviderError",
    "ProviderRequest",
    "SyncSecretResolver",
    "VertexAnthropicProvider",
    "VertexGeminiProvider",
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
    credential: RefreshingCredential | None = None,
) -> Provider:
    """The provider client for one configured provider.

    Servers pass `secret`, the live key from atp_adapters.secrets.SecretResolver (resolved at start-up and
    kept current through rotation). Without it the key is resolved now through `secret_resolver` and
    stays fixed. Either way a missing secret is a ConfigError at start-up, not on the first request.
    Bedrock, Vertex AI and Azure with Entra ID authenticate with a started cloud `credential` instead
    (cloud_auth.start_credentials).
    """
    if isinstance(cfg, config.LocalProvider):
        return LocalProvider(cfg, name)
    if cfg.type in ("bedrock", "vertex") or cfg.auth == "entra":
        if credential is None:
            raise ConfigError(f"provider {name}: {cfg.type} needs a cloud credential")
        if cfg.type == "bedrock":
            return BedrockProvider(cfg, credential, name)
        if cfg.type == "vertex":
            vertex = VertexAnthropicProvider if cfg.publisher == "anthropic" else VertexGeminiProvider
            return vertex(cfg, credential, name)
        return OpenAIProvider(cfg, credential, name)
    key = secret if secret is not None else secret_resolver(cfg.api_key)
    return _HTTP_PROVIDERS[cfg.type](cfg, key, name)
