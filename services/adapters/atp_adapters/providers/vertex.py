"""Google Vertex AI as a provider: Gemini models and Anthropic's models, with OAuth tokens from google-auth."""

from __future__ import annotations

from typing import Any

import orjson

from atp_adapters.providers.anthropic import AnthropicProvider
from atp_adapters.providers.base import ProviderRequest
from atp_adapters.providers.cloud_auth import RefreshingCredential
from atp_adapters.providers.gemini import GeminiProvider
from atp_common import config

# The anthropic_version Vertex expects in the body, in place of the anthropic-version header.
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
# What Vertex's countTokens takes of a generateContent body.
_VERTEX_COUNTED = frozenset(("contents", "systemInstruction", "tools", "generationConfig"))


def _endpoint(cfg: config.HttpProvider) -> config.HttpProvider:
    if cfg.base_url:
        return cfg
    host = (
        "aiplatform.googleapis.com"
        if cfg.location == "global"
        else f"{cfg.location}-aiplatform.googleapis.com"
    )
    return cfg.model_copy(update={"base_url": f"https://{host}"})


def _model_path(cfg: config.HttpProvider, publisher: str, provider_model: str) -> str:
    return (
        f"/v1/projects/{cfg.project}/locations/{cfg.location}/publishers/{publisher}/models/{provider_model}"
    )


class VertexGeminiProvider(GeminiProvider):
    """Gemini on Vertex AI: the generateContent body of Google's API, a project/location path and a
    bearer token instead of an API key."""

    def __init__(self, cfg: config.HttpProvider, credential: RefreshingCredential, name: str = "vertex"):
        cfg = _endpoint(cfg)
        super().__init__(cfg, credential, name)
        self._vertex = cfg

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def url_for(self, provider_model: str, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base_url}{_model_path(self._vertex, 'google', provider_model)}:{method}"

    def count_call(self, provider_model: str, generate: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # Vertex's countTokens takes the request's fields at the top level, and no safety settings.
        body = {k: v for k, v in generate.items() if k in _VERTEX_COUNTED}
        return f"{self._base_url}{_model_path(self._vertex, 'google', provider_model)}:countTokens", body


class VertexAnthropicProvider(AnthropicProvider):
    """Anthropic's models on Vertex AI: the Messages body without `model` and with `anthropic_version`,
    sent to rawPredict / streamRawPredict with a bearer token."""

    def __init__(self, cfg: config.HttpProvider, credential: RefreshingCredential, name: str = "vertex"):
        cfg = _endpoint(cfg)
        super().__init__(cfg, credential, name)
        self._vertex = cfg

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def url_for(self, provider_model: str, stream: bool) -> str:
        method = "streamRawPredict" if stream else "rawPredict"
        return f"{self._base_url}{_model_path(self._vertex, 'anthropic', provider_model)}:{method}"

    def count_call(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # One count endpoint for every Anthropic model on Vertex: the model stays in the body.
        path = _model_path(self._vertex, "anthropic", "count-tokens")
        return f"{self._base_url}{path}:rawPredict", {**body, "anthropic_version": VERTEX_ANTHROPIC_VERSION}

    def encode(self, request: ProviderRequest) -> bytes:
        body = orjson.loads(super().encode(request))
        del body["model"]
        body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return orjson.dumps(body)
