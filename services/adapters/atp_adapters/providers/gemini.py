"""Google's Gemini API (generateContent, streamGenerateContent over SSE) as a provider."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.base import ProviderBatch, ProviderError, ProviderRequest, unsupported
from atp_common import config

DEFAULT_GEMINI_VERSION = "v1beta"
_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_JSON_FORMATS = ("json_object", "json_schema")


def _usage(metadata: dict[str, Any]) -> chat_pb2.Usage:
    thoughts = metadata.get("thoughtsTokenCount") or 0
    # Gemini counts thinking apart from the candidates; OpenAI's completion tokens include reasoning.
    return usage_from(
        metadata.get("promptTokenCount"),
        (metadata.get("candidatesTokenCount") or 0) + thoughts,
        metadata.get("cachedContentTokenCount"),
        thoughts,
    )


def _call_id() -> str:
    # Gemini's function calls carry no id in most versions; OpenAI clients need one to answer with.
    return "call_" + secrets.token_hex(12)


def _parts(provider: str, message: chat_pb2.ChatMessage) -> list[dict[str, Any]]:
    if not message.content_parts_json:
        return [{"text": message.content}] if message.content else []
    parts: list[dict[str, Any]] = []
    for part in orjson.loads(message.content_parts_json):
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not url.startswith("data:"):
                raise unsupported(provider, "messages", "image_url must be a data: URL for Gemini")
            header, _, data = url.partition(",")
            parts.append({"inlineData": {"mimeType": header[5:].split(";", 1)[0], "data": data}})
        else:
            raise unsupported(provider, "messages", f"content part type {kind!r}")
    return parts


def _tool_response(content: str) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {"content": content}
    return value if isinstance(value, dict) else {"content": value}


def encode_gemini(provider: str, request: ProviderRequest) -> bytes:
    """Our request as a generateContent body: system messages become systemInstruction, assistant turns
    role `model`, tool calls functionCall parts and tool results functionResponse parts. The `user`
    parameter only labels the caller for OpenAI's abuse monitoring; Gemini has no such field, so it is
    not sent (it does not change the reply)."""
    params = request.params
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            system.extend(_parts(provider, message))
        elif role == "tool":
            name = call_names.get(message.tool_call_id) or message.name
            if not name:
                raise unsupported(provider, "messages", "a tool result whose call is not in the conversation")
            part = {"functionResponse": {"name": name, "response": _tool_response(message.content)}}
            if contents and contents[-1]["role"] == "user" and "functionResponse" in contents[-1]["parts"][0]:
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif role == "assistant":
            parts = _parts(provider, message)
            for call in message.tool_calls:
                call_names[call.id] = call.function_name
                args = orjson.loads(call.arguments) if call.arguments else {}
                parts.append({"functionCall": {"name": call.function_name, "args": args}})
            contents.append({"role": "model", "parts": parts})
        elif role == "user":
            contents.append({"role": "user", "parts": _parts(provider, message)})
        else:
            raise unsupported(provider, "messages", f"role {role!r}")

    generation: dict[str, Any] = {}
    if params.HasField("temperature"):
        generation["temperature"] = params.temperature
    if params.HasField("top_p"):
        generation["topP"] = params.top_p
    if params.HasField("max_tokens"):
        generation["maxOutputTokens"] = params.max_tokens
    if params.stop:
        generation["stopSequences"] = list(params.stop)
    if params.HasField("seed"):
        generation["seed"] = params.seed
    if params.HasField("presence_penalty"):
        generation["presencePenalty"] = params.presence_penalty
    if params.HasField("frequency_penalty"):
        generation["frequencyPenalty"] = params.frequency_penalty
    if params.response_format_json:
        response_format = orjson.loads(params.response_format_json)
        kind = response_format.get("type")
        if kind in _JSON_FORMATS:
            generation["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                generation["responseJsonSchema"] = schema
        elif kind != "text":
            raise unsupported(provider, "response_format", f"type {kind!r}")

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if generation:
        body["generationConfig"] = generation
    if params.tools_json:
        declarations = []
        for tool in orjson.loads(params.tools_json):
            if tool.get("type", "function") != "function":
                raise unsupported(provider, "tools", f"tool type {tool.get('type')!r}")
            function = tool.get("function") or {}
            declaration = {"name": function.get("name", "")}
            if function.get("description"):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parameters"] = function["parameters"]
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    if params.tool_choice_json:
        choice = orjson.loads(params.tool_choice_json)
        if choice in ("auto", "none", "required"):
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
            body["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name", "")
            body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
        else:
            raise unsupported(provider, "tool_choice", f"value {choice!r}")
    return orjson.dumps(body)


class _Reply:
    """Applies GenerateContentResponse objects (whole, or stream chunks) to a DeltaBuilder."""

    __slots__ = ("finish_reason", "tool_count", "usage")

    def __init__(self) -> None:
        self.finish_reason = ""
        self.tool_count = 0
        self.usage: chat_pb2.Usage | None = None

    def apply(self, provider: str, payload: dict[str, Any], builder: DeltaBuilder) -> None:
        error = payload.get("error")
        if error:
            raise ProviderError(
                f"provider {provider} sent an error: {error.get('message', '')}",
                kind="http",
                provider=provider,
                status=error.get("code") if isinstance(error.get("code"), int) else None,
            )
        candidates = payload.get("candidates")
        if candidates:
            candidate = candidates[0]
            for part in (candidate.get("content") or {}).get("parts") or ():
                if part.get("thought"):
                    continue  # thought summaries are not part of the reply
                text = part.get("text")
                if text:
                    builder.text(text)
                call = part.get("functionCall")
                if call:
                    arguments = orjson.dumps(call.get("args") or {}).decode()
                    call_id = call.get("id") or _call_id()
                    builder.tool(self.tool_count, call_id, "function", call.get("name", ""), arguments)
                    self.tool_count += 1
            reason = candidate.get("finishReason")
            if reason:
                self.finish_reason = _FINISH_REASONS.get(reason, "stop")
        else:
            blocked = (payload.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                self.finish_reason = "content_filter"
        metadata = payload.get("usageMetadata")
        if metadata:
            self.usage = _usage(metadata)

    def finish(self) -> str:
        # Gemini says STOP when it calls a function; OpenAI's vocabulary says tool_calls.
        if self.tool_count and self.finish_reason in ("", "stop"):
            return "tool_calls"
        return self.finish_reason or "stop"


class _GeminiStream(StreamState):
    __slots__ = ("_provider", "_reply")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        self._reply = _Reply()

    def event(self, name: bytes, data: bytes) -> bool:
        self._reply.apply(self._provider, orjson.loads(data), self.deltas)
        self.usage = self._reply.usage
        if self._reply.finish_reason or self._reply.tool_count:
            self.finish_reason = self._reply.finish()
        # The stream has no end marker: it ends with the connection's body, after the finishReason.
        return False


class GeminiProvider(HttpProvider):
    """Gemini's generateContent API. `base_url` without the version (`https://generativelanguage.
    googleapis.com`); `api_version` picks the version path (default v1beta)."""

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "gemini") -> None:
        super().__init__(cfg, api_key, name)
        self._version = cfg.api_version or DEFAULT_GEMINI_VERSION

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def url_for(self, provider_model: str, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base_url}/{self._version}/models/{provider_model}:{method}"

    def encode(self, request: ProviderRequest) -> bytes:
        try:
            return encode_gemini(self.name, request)
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise unsupported(self.name, "messages", f"invalid JSON in the request: {exc}") from exc

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _GeminiStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        builder = DeltaBuilder()
        reply = _Reply()
        reply.apply(self.name, payload, builder)
        return ProviderBatch(builder.take(), reply.finish(), reply.usage)
