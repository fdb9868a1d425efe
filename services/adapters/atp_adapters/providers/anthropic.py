"""Anthropic's Messages API as a provider: OpenAI-shaped requests in, Messages wire format out."""

from __future__ import annotations

from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.base import ProviderBatch, ProviderError, ProviderRequest, unsupported
from atp_common import config

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# Messages requires max_tokens; when the caller sets none, allow a long reply rather than cut it short.
DEFAULT_MAX_TOKENS = 4096
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _usage(usage: dict[str, Any], output_tokens: Any = None) -> chat_pb2.Usage:
    cached = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    # Anthropic's input_tokens leaves out cache reads and writes; prompt tokens here count them all.
    prompt = (usage.get("input_tokens") or 0) + cached + written
    completion = output_tokens if output_tokens is not None else usage.get("output_tokens")
    return usage_from(prompt, completion, cached, cache_write=written)


def _image_block(provider: str, part: dict[str, Any]) -> dict[str, Any]:
    url = (part.get("image_url") or {}).get("url", "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url:
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise unsupported(provider, "messages", "an image_url part without a url")


def _content_blocks(provider: str, message: chat_pb2.ChatMessage) -> list[dict[str, Any]] | str:
    if not message.content_parts_json:
        return message.content
    blocks: list[dict[str, Any]] = []
    for part in orjson.loads(message.content_parts_json):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image_block(provider, part))
        else:
            raise unsupported(provider, "messages", f"content part type {kind!r}")
    return blocks


def _as_blocks(content: list[dict[str, Any]] | str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _tools(provider: str, tools_json: bytes) -> list[dict[str, Any]]:
    tools = []
    for tool in orjson.loads(tools_json):
        if tool.get("type", "function") != "function":
            raise unsupported(provider, "tools", f"tool type {tool.get('type')!r}")
        function = tool.get("function") or {}
        entry: dict[str, Any] = {
            "name": function.get("name", ""),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        tools.append(entry)
    return tools


def _tool_choice(provider: str, choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    raise unsupported(provider, "tool_choice", f"value {choice!r}")


def encode_anthropic(provider: str, request: ProviderRequest) -> bytes:
    """Our request as a Messages API body. System messages become `system`; tool results become
    `tool_result` blocks of a user turn; assistant tool calls become `tool_use` blocks."""
    params = request.params
    if params.HasField("seed"):
        raise unsupported(provider, "seed")
    if params.HasField("presence_penalty"):
        raise unsupported(provider, "presence_penalty")
    if params.HasField("frequency_penalty"):
        raise unsupported(provider, "frequency_penalty")
    if params.response_format_json:
        response_format = orjson.loads(params.response_format_json)
        if response_format.get("type") != "text":
            raise unsupported(provider, "response_format", f"type {response_format.get('type')!r}")

    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            system.append(message.content)
            continue
        if role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
            # Results of parallel tool calls must share one user turn.
            if messages and messages[-1]["role"] == "user" and messages[-1].get("_tool_results"):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block], "_tool_results": True})
            continue
        if role == "assistant" and message.tool_calls:
            blocks = _as_blocks(_content_blocks(provider, message))
            for call in message.tool_calls:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function_name,
                        "input": orjson.loads(call.arguments) if call.arguments else {},
                    }
                )
            messages.append({"role": "assistant", "content": blocks})
            continue
        if role not in ("user", "assistant"):
            raise unsupported(provider, "messages", f"role {role!r}")
        messages.append({"role": role, "content": _content_blocks(provider, message)})
    for entry in messages:
        entry.pop("_tool_results", None)

    body: dict[str, Any] = {
        "model": request.provider_model,
        "max_tokens": params.max_tokens if params.HasField("max_tokens") else DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.stream:
        body["stream"] = True
    if params.HasField("temperature"):
        body["temperature"] = params.temperature
    if params.HasField("top_p"):
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if params.user:
        body["metadata"] = {"user_id": params.user}
    if params.tools_json:
        body["tools"] = _tools(provider, params.tools_json)
    if params.tool_choice_json:
        body["tool_choice"] = _tool_choice(provider, orjson.loads(params.tool_choice_json))
    return orjson.dumps(body)


class _AnthropicStream(StreamState):
    __slots__ = ("_provider", "_start_usage", "_tool_index")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        self._start_usage: dict[str, Any] = {}
        # Content block index -> tool call index (text blocks take block indexes too).
        self._tool_index: dict[int, int] = {}

    def event(self, name: bytes, data: bytes) -> bool:
        payload = orjson.loads(data)
        kind = payload.get("type") or name.decode()
        if kind == "content_block_delta":
            delta = payload["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                self.deltas.text(delta.get("text", ""))
            elif delta_type == "input_json_delta":
                index = self._tool_index.get(payload.get("index", 0))
                if index is not None:
                    self.deltas.tool(index, "", "", "", delta.get("partial_json", ""))
            # thinking and signature deltas are not part of the reply.
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index[payload.get("index", 0)] = len(self._tool_index)
                self.deltas.tool(index, block.get("id", ""), "function", block.get("name", ""), "")
            elif block.get("type") == "text" and block.get("text"):
                self.deltas.text(block["text"])
        elif kind == "message_start":
            self._start_usage = (payload.get("message") or {}).get("usage") or {}
            self.usage = _usage(self._start_usage)
        elif kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = _STOP_REASONS.get(reason, "stop")
            usage = payload.get("usage")
            if usage:
                # message_delta's usage is cumulative; input counts may be restated there too.
                self.usage = _usage({**self._start_usage, **usage}, usage.get("output_tokens"))
        elif kind == "message_stop":
            return True
        elif kind == "error":
            error = payload.get("error") or {}
            status = 529 if error.get("type") == "overloaded_error" else None
            raise ProviderError(
                f"provider {self._provider} sent an error in the stream: {error.get('message', '')}",
                kind="http",
                provider=self._provider,
                status=status,
            )
        return False

    def complete_at_eof(self) -> bool:
        return False  # message_stop is the only proper end


class AnthropicProvider(HttpProvider):
    """Anthropic's Messages API. `base_url` without the version path (`https://api.anthropic.com`);
    `api_version` is the anthropic-version header."""

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "anthropic") -> None:
        self._version = cfg.api_version or DEFAULT_ANTHROPIC_VERSION
        super().__init__(cfg, api_key, name)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        headers = {"anthropic-version": self._version}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def url_for(self, provider_model: str, stream: bool) -> str:
        return f"{self._base_url}/v1/messages"

    def encode(self, request: ProviderRequest) -> bytes:
        try:
            return encode_anthropic(self.name, request)
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise unsupported(self.name, "messages", f"invalid JSON in the request: {exc}") from exc

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _AnthropicStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        builder = DeltaBuilder()
        tool_index = 0
        for block in payload.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                builder.text(block.get("text", ""))
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                builder.tool(tool_index, block.get("id", ""), "function", block.get("name", ""), arguments)
                tool_index += 1
        finish = _STOP_REASONS.get(payload.get("stop_reason") or "", "stop")
        usage = payload.get("usage")
        return ProviderBatch(builder.take(), finish, _usage(usage) if usage else None)
