"""OpenAI Chat Completions (and every compatible server, and Azure OpenAI) as a provider."""

from __future__ import annotations

from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.base import ProviderBatch, ProviderError, ProviderRequest
from atp_common import config

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_DONE = b"[DONE]"
DEFAULT_AZURE_API_VERSION = "2024-10-21"


def _finish(reason: str | None) -> str:
    return _FINISH_REASONS.get(reason or "", "stop")


def _usage(usage: dict[str, Any]) -> chat_pb2.Usage:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return usage_from(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        prompt_details.get("cached_tokens"),
        completion_details.get("reasoning_tokens"),
    )


def _message(message: chat_pb2.ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    if message.content_parts_json:
        # Already OpenAI's shape: embed the bytes as they are, no parse and re-serialise.
        out["content"] = orjson.Fragment(message.content_parts_json)
    elif message.content or not message.tool_calls:
        out["content"] = message.content
    else:
        out["content"] = None
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {"name": call.function_name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return out


def encode_openai(request: ProviderRequest, token_limit_field: str = "max_tokens") -> bytes:
    """Our request as an OpenAI Chat Completions body, the output-token limit in `token_limit_field`."""
    params = request.params
    body: dict[str, Any] = {
        "model": request.provider_model,
        "messages": [_message(m) for m in request.messages],
        "stream": request.stream,
    }
    if request.stream and request.include_usage:
        body["stream_options"] = {"include_usage": True}
    if params.HasField("temperature"):
        body["temperature"] = params.temperature
    if params.HasField("top_p"):
        body["top_p"] = params.top_p
    if params.HasField("max_tokens"):
        body[token_limit_field] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.HasField("seed"):
        body["seed"] = params.seed
    if params.HasField("presence_penalty"):
        body["presence_penalty"] = params.presence_penalty
    if params.HasField("frequency_penalty"):
        body["frequency_penalty"] = params.frequency_penalty
    if params.user:
        body["user"] = params.user
    if params.tools_json:
        body["tools"] = orjson.Fragment(params.tools_json)
    if params.tool_choice_json:
        body["tool_choice"] = orjson.Fragment(params.tool_choice_json)
    if params.response_format_json:
        body["response_format"] = orjson.Fragment(params.response_format_json)
    return orjson.dumps(body)


class _OpenAIStream(StreamState):
    __slots__ = ("_provider",)

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider

    def event(self, name: bytes, data: bytes) -> bool:
        if data == _DONE:
            return True
        chunk = orjson.loads(data)
        error = chunk.get("error")
        if error:
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise ProviderError(
                f"provider {self._provider} sent an error in the stream: {message}",
                kind="http",
                provider=self._provider,
            )
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    self.deltas.text(content)
                tool_calls = delta.get("tool_calls")
                if tool_calls:
                    add_tool = self.deltas.tool
                    for call in tool_calls:
                        function = call.get("function") or {}
                        add_tool(
                            call.get("index", 0),
                            call.get("id") or "",
                            call.get("type") or "",
                            function.get("name") or "",
                            function.get("arguments") or "",
                        )
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = _finish(reason)
        usage = chunk.get("usage")
        if usage:
            self.usage = _usage(usage)
        return False


class OpenAIProvider(HttpProvider):
    """OpenAI's Chat Completions API; `type: azure` uses Azure's deployment path and `api-key` header.

    `base_url` includes the version path for OpenAI-compatible servers (`https://api.openai.com/v1`) and
    is the resource endpoint for Azure (`https://NAME.openai.azure.com`).
    """

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "openai") -> None:
        self._azure = cfg.type == "azure"
        self._entra = cfg.auth == "entra"
        self._token_limit_field = cfg.token_limit_field
        super().__init__(cfg, api_key, name)
        self._api_version = cfg.api_version or DEFAULT_AZURE_API_VERSION

    def auth_headers(self, api_key: str) -> dict[str, str]:
        if not api_key:
            return {}
        if self._azure and not self._entra:
            return {"api-key": api_key}
        # OpenAI's key, or an Entra ID token for Azure.
        return {"authorization": f"Bearer {api_key}"}

    def url_for(self, provider_model: str, stream: bool) -> str:
        if self._azure:
            return (
                f"{self._base_url}/openai/deployments/{provider_model}/chat/completions"
                f"?api-version={self._api_version}"
            )
        return f"{self._base_url}/chat/completions"

    def encode(self, request: ProviderRequest) -> bytes:
        return encode_openai(request, self._token_limit_field)

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _OpenAIStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        choices = payload.get("choices") or []
        builder = DeltaBuilder()
        finish = "stop"
        if choices:
            choice = choices[0]
            message = choice.get("message") or {}
            content = message.get("content")
            if content:
                builder.text(content)
            for index, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                builder.tool(
                    index,
                    call.get("id") or "",
                    call.get("type") or "function",
                    function.get("name") or "",
                    function.get("arguments") or "",
                )
            finish = _finish(choice.get("finish_reason"))
        usage = payload.get("usage")
        return ProviderBatch(builder.take(), finish, _usage(usage) if usage else None)
