"""The typed request as an OpenAI Chat Completions body: every part and parameter in OpenAI's own shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import (
    OPENAI_TOOL_ID_MAX,
    ProviderRequest,
    fitted_tool_id,
    tool_description,
    unsupported,
)

# A thinking budget (Anthropic and Gemini terms) as OpenAI's effort: up to each bound, that effort.
# Documented in docs/design-notes.md ("Typed internal request and feature filtering").
BUDGET_EFFORTS: tuple[tuple[int, str], ...] = ((1024, "low"), (8192, "medium"))
BUDGET_EFFORT_ABOVE = "high"


def effort_for_budget(budget: int) -> str:
    """The reasoning_effort for a thinking budget in tokens."""
    for bound, effort in BUDGET_EFFORTS:
        if budget <= bound:
            return effort
    return BUDGET_EFFORT_ABOVE


def _file(file: chat_pb2.FileContent, provider: str, path: str) -> dict[str, Any]:
    if file.content:
        raise unsupported(provider, path, "OpenAI file parts take file data, not a document's text blocks")
    for field in ("url", "title", "context"):
        if getattr(file, field):
            raise unsupported(
                provider, f"{path}.{field}", "OpenAI file parts take file_id, file_data or filename"
            )
    if file.HasField("citations"):
        raise unsupported(provider, f"{path}.citations", "OpenAI file parts have no citations switch")
    out: dict[str, str] = {}
    if file.file_id:
        out["file_id"] = file.file_id
    if file.file_data:
        data = file.file_data
        if not data.startswith("data:") and file.media_type:
            data = f"data:{file.media_type};base64,{data}"
        out["file_data"] = data
    if file.filename:
        out["filename"] = file.filename
    return out


def _part(part: chat_pb2.ContentPart, provider: str, path: str) -> dict[str, Any] | None:
    kind = part.WhichOneof("kind")
    out: dict[str, Any]
    if kind == "text":
        if part.citations_json:
            raise unsupported(provider, f"{path}.citations", "OpenAI messages carry no citations")
        out = {"type": "text", "text": part.text}
    elif kind == "image":
        image: dict[str, str] = {"url": part.image.url}
        if part.image.detail:
            image["detail"] = part.image.detail
        out = {"type": "image_url", "image_url": image}
    elif kind == "audio":
        out = {"type": "input_audio", "input_audio": {"data": part.audio.data, "format": part.audio.format}}
    elif kind == "file":
        out = {"type": "file", "file": _file(part.file, provider, f"{path}.file")}
    elif kind == "refusal":
        out = {"type": "refusal", "refusal": part.refusal}
    elif kind == "thinking":
        # A thinking block is signed by the provider that wrote it and means nothing to OpenAI: left out.
        return None
    else:
        raise unsupported(provider, path, f"OpenAI has no {kind} content part")
    cache = part.cache_control
    if cache.type == "explicit":
        # OpenAI's explicit breakpoint; Anthropic-style ephemeral hints are not sent, since OpenAI caches
        # every long prefix by itself.
        breakpoint_: dict[str, str] = {"mode": "explicit"}
        if cache.ttl:
            breakpoint_["ttl"] = cache.ttl
        out["prompt_cache_breakpoint"] = breakpoint_
    return out


def _tool_call(call: chat_pb2.ToolCall) -> dict[str, Any]:
    if call.type == "custom":
        return {
            "id": fitted_tool_id(call.id, OPENAI_TOOL_ID_MAX),
            "type": "custom",
            "custom": {"name": call.function_name, "input": call.arguments},
        }
    return {
        "id": fitted_tool_id(call.id, OPENAI_TOOL_ID_MAX),
        "type": call.type or "function",
        "function": {"name": call.function_name, "arguments": call.arguments},
    }


def _message(message: chat_pb2.ChatMessage, provider: str, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content: Any
    if message.parts:
        path = f"messages[{index}].content"
        content = [
            encoded
            for j, part in enumerate(message.parts)
            if (encoded := _part(part, provider, f"{path}[{j}]")) is not None
        ]
    elif message.content or not (message.tool_calls or message.refusal or message.audio_id):
        content = message.content
    else:
        content = None
    if message.is_error:
        # OpenAI's tool messages have no error flag: the result says so in its text instead.
        if isinstance(content, list):
            content = [{"type": "text", "text": "Error:"}, *content]
        else:
            content = f"Error: {content or ''}"
    out["content"] = content
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = fitted_tool_id(message.tool_call_id, OPENAI_TOOL_ID_MAX)
    if message.tool_calls:
        out["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
    if message.refusal:
        out["refusal"] = message.refusal
    if message.audio_id:
        out["audio"] = {"id": message.audio_id}
    return out


def _messages(messages: Any, provider: str) -> list[dict[str, Any]]:
    """Each message in OpenAI's terms. A tool result's media (an image a tool returned, as Anthropic's and
    Gemini's results may hold) has no place in OpenAI's tool messages, which take text only: it follows
    the run of tool results as a user message, each result's media under a line naming its call."""
    encoded = [_message(m, provider, i) for i, m in enumerate(messages)]
    for message in messages:
        if message.parts and message.role == "tool":
            break
    else:
        return encoded  # most requests: no tool result with parts
    out: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    for message, encoded_message in zip(messages, encoded, strict=True):
        if media and message.role != "tool":
            out.append({"role": "user", "content": media})
            media = []
        content = encoded_message["content"]
        if message.role == "tool" and isinstance(content, list) and any(p["type"] != "text" for p in content):
            text = [part for part in content if part["type"] == "text"]
            encoded_message["content"] = text or "The result is in the next message."
            media.append(
                {
                    "type": "text",
                    "text": f"Result of tool call {encoded_message['tool_call_id']}:",
                }
            )
            media.extend(part for part in content if part["type"] != "text")
        out.append(encoded_message)
    if media:
        out.append({"role": "user", "content": media})
    return out


def _tool(tool: chat_pb2.Tool) -> dict[str, Any]:
    if tool.type == "custom":
        custom: dict[str, Any] = {"name": tool.name}
        if description := tool_description(tool):
            custom["description"] = description
        if tool.format_json:
            custom["format"] = orjson.Fragment(tool.format_json)
        return {"type": "custom", "custom": custom}
    function: dict[str, Any] = {"name": tool.name}
    if description := tool_description(tool):
        function["description"] = description
    if tool.parameters_json:
        function["parameters"] = orjson.Fragment(tool.parameters_json)
    if tool.HasField("strict"):
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _named(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, kind: {"name": name}}


def _tool_choice(choice: chat_pb2.ToolChoice, tools: Any) -> Any:
    mode = choice.mode
    if mode in ("function", "custom"):
        return _named(mode, choice.name)
    if mode == "allowed_tools":
        kinds = {tool.name: tool.type or "function" for tool in tools}
        allowed = [_named(kinds.get(name, "function"), name) for name in choice.allowed]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.allowed_mode or "auto", "tools": allowed},
        }
    return mode


def _response_format(fmt: chat_pb2.ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name}
    if fmt.description:
        schema["description"] = fmt.description
    if fmt.schema_json:
        schema["schema"] = orjson.Fragment(fmt.schema_json)
    if fmt.HasField("strict"):
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def _reasoning_effort(reasoning: chat_pb2.Reasoning) -> str:
    if reasoning.effort:
        return reasoning.effort
    if reasoning.budget_tokens > 0 and not reasoning.disabled:
        return effort_for_budget(reasoning.budget_tokens)
    # Thinking disabled, or only include_thoughts: OpenAI's default already thinks as little as the model
    # allows and Chat Completions never returns reasoning text, so there is nothing to send.
    return ""


def _prediction(prediction: chat_pb2.Prediction, provider: str) -> dict[str, Any]:
    if prediction.parts:
        content: Any = [
            _part(part, provider, f"prediction.content[{j}]") for j, part in enumerate(prediction.parts)
        ]
    else:
        content = prediction.content
    return {"type": "content", "content": content}


def _rare(body: dict[str, Any], params: chat_pb2.GenerationParams, provider: str) -> None:
    """The parameters beyond the common few, each sent only when the client set it."""
    for name, field_, encode in _RARE:
        if params.HasField(field_) if field_ in _PRESENT else getattr(params, field_):
            value = encode(getattr(params, field_), params, provider)
            if value is not None and value != "":
                body[name] = value
    for key, raw in params.openai_options.items():
        body[key] = orjson.Fragment(raw)


def _as_is(value: Any, params: chat_pb2.GenerationParams, provider: str) -> Any:
    return value


def _listed(value: Any, params: chat_pb2.GenerationParams, provider: str) -> Any:
    return list(value)


def _mapped(value: Any, params: chat_pb2.GenerationParams, provider: str) -> Any:
    return dict(value)


def _top_k(value: Any, params: chat_pb2.GenerationParams, provider: str) -> Any:
    raise unsupported(provider, "top_k", "OpenAI has no top_k")


Encoder = Callable[[Any, chat_pb2.GenerationParams, str], Any]
# Scalars with presence and every message field: a message is truthy even when unset, so its presence
# (not its value) says whether the client sent it.
_PRESENT = frozenset(f.name for f in chat_pb2.GenerationParams.DESCRIPTOR.fields if f.has_presence)
_RARE: tuple[tuple[str, str, Encoder], ...] = (
    ("tools", "tools", lambda v, p, n: [_tool(t) for t in v]),
    ("tool_choice", "tool_choice", lambda v, p, n: _tool_choice(v, p.tools)),
    ("response_format", "response_format", lambda v, p, n: _response_format(v)),
    ("parallel_tool_calls", "parallel_tool_calls", _as_is),
    ("reasoning_effort", "reasoning", lambda v, p, n: _reasoning_effort(v)),
    ("logprobs", "logprobs", _as_is),
    ("top_logprobs", "top_logprobs", _as_is),
    ("metadata", "metadata", _mapped),
    ("store", "store", _as_is),
    ("service_tier", "service_tier", _as_is),
    ("prediction", "prediction", lambda v, p, n: _prediction(v, n)),
    ("modalities", "modalities", _listed),
    ("audio", "audio", lambda v, p, n: {"voice": v.voice, "format": v.format}),
    ("logit_bias", "logit_bias", _mapped),
    ("n", "n", _as_is),
    ("top_k", "top_k", _top_k),
    ("prompt_cache_key", "prompt_cache_key", _as_is),
    ("prompt_cache_retention", "prompt_cache_retention", _as_is),
    ("safety_identifier", "safety_identifier", _as_is),
    ("verbosity", "verbosity", _as_is),
)


def encode_openai(
    request: ProviderRequest, token_limit_field: str | None = None, provider: str = "openai"
) -> bytes:
    """Our request as an OpenAI Chat Completions body, the output-token limit in `token_limit_field` (None:
    the name the client used).

    Raises ProviderError(kind='unsupported') naming the path of what OpenAI cannot take (top_k, a file
    by URL). A request-level cache_control is not sent: OpenAI caches long prompt prefixes by itself.
    """
    params = request.params
    body: dict[str, Any] = {
        "model": request.provider_model,
        "messages": _messages(request.messages, provider),
        "stream": request.stream,
    }
    if request.stream and request.include_usage:
        body["stream_options"] = {"include_usage": True}
    if params.HasField("temperature"):
        body["temperature"] = params.temperature
    if params.HasField("top_p"):
        body["top_p"] = params.top_p
    if params.HasField("max_tokens"):
        # The configured name, else the one the client used (max_tokens from other dialects).
        name = token_limit_field or (
            "max_completion_tokens" if params.max_completion_tokens else "max_tokens"
        )
        body[name] = params.max_tokens
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
    if _has_rare(params):
        _rare(body, params, provider)
    return orjson.dumps(body)


def _has_rare(params: chat_pb2.GenerationParams) -> bool:
    """Whether any parameter beyond the common few is set; requests without one skip their checks."""
    for field, _ in params.ListFields():
        if field.number not in _COMMON_NUMBERS:
            return True
    return False


_COMMON_NUMBERS = frozenset(
    chat_pb2.GenerationParams.DESCRIPTOR.fields_by_name[name].number
    for name in (
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
    )
)
