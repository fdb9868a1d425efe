"""A validated Chat Completions request as the typed Generate request, every parameter and part mapped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument

__all__ = ["PARAMETERS", "to_generate_request"]

# Every request parameter and the field of the internal request that carries it (the README's
# compatibility table is generated from this; atp_gateway.compat).
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("messages", "messages"),
    ("messages[].content (image_url)", "messages.parts.image"),
    ("messages[].content (input_audio)", "messages.parts.audio"),
    ("messages[].content (file)", "messages.parts.file"),
    ("messages[].content[].cache_control", "messages.parts.cache_control"),
    ("messages[].content[].prompt_cache_breakpoint", "messages.parts.cache_control"),
    ("stream", "stream"),
    ("stream_options.include_usage", "include_usage"),
    ("stream_options.include_obfuscation", "refused"),
    ("n", "params.n"),
    ("temperature", "params.temperature"),
    ("top_p", "params.top_p"),
    ("max_tokens", "params.max_tokens"),
    (
        "max_completion_tokens",
        "params.max_tokens, params.max_completion_tokens (the name, for OpenAI-compatible providers)",
    ),
    ("stop", "params.stop"),
    ("seed", "params.seed"),
    ("user", "params.user"),
    ("safety_identifier", "params.safety_identifier"),
    ("tools (function)", "params.tools"),
    ("tools (custom)", "params.tools.custom"),
    ("tools[].cache_control", "params.tools.cache_control"),
    ("tool_choice", "params.tool_choice"),
    ("tool_choice (allowed_tools)", "params.tool_choice.allowed"),
    ("parallel_tool_calls", "params.parallel_tool_calls"),
    ("functions", "params.tools"),
    ("function_call", "params.tool_choice"),
    ("response_format", "params.response_format"),
    ("response_format (json_object)", "params.response_format.json_object"),
    ("presence_penalty", "params.presence_penalty"),
    ("frequency_penalty", "params.frequency_penalty"),
    ("logit_bias", "params.logit_bias"),
    ("logprobs", "params.logprobs"),
    ("top_logprobs", "params.top_logprobs"),
    ("metadata", "params.metadata"),
    ("store", "params.store"),
    ("service_tier", "params.service_tier"),
    ("reasoning_effort", "params.reasoning"),
    ("verbosity", "params.verbosity"),
    ("modalities", "params.modalities"),
    ("audio", "params.audio"),
    ("prediction", "params.prediction"),
    ("prompt_cache_key", "params.prompt_cache_key"),
    ("prompt_cache_retention", "params.prompt_cache_retention"),
    ("prompt_cache_options", "params.openai_options"),
    ("moderation", "params.openai_options"),
    ("web_search_options", "params.openai_options"),
)

_OPTIONAL = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "n", "logprobs")
_TEXT = (
    "user",
    "safety_identifier",
    "service_tier",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
)
_OPENAI_OPTIONS = ("web_search_options", "moderation", "prompt_cache_options")
_IMAGE_SCHEMES = ("http://", "https://", "data:")
# The parameters _params handles after the common ones.
_RARE = frozenset(
    (
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "metadata",
        "store",
        "modalities",
        "audio",
        "prediction",
        "logit_bias",
        "top_logprobs",
        *_OPENAI_OPTIONS,
    )
)


def dump(value: Any) -> bytes:
    """JSON for a pass-through value; orjson, or the standard library for integers beyond 64 bits."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _invalid(path: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid value for '{path}': {message}", param=path)


def _cache(part: chat_pb2.ContentPart | chat_pb2.Tool, raw: Mapping[str, Any], path: str) -> None:
    hint = raw.get("cache_control")
    breakpoint_ = raw.get("prompt_cache_breakpoint")
    if hint is not None and breakpoint_ is not None:
        raise _invalid(path, "give cache_control or prompt_cache_breakpoint, not both.")
    if hint is not None:
        part.cache_control.type = "ephemeral"
        part.cache_control.ttl = hint.get("ttl", "")
    elif breakpoint_ is not None:
        # OpenAI's explicit breakpoint; providers that cache by hint treat it like cache_control.
        part.cache_control.type = "explicit"
        part.cache_control.ttl = breakpoint_.get("ttl", "")


def _part(raw: Mapping[str, Any], path: str) -> chat_pb2.ContentPart:
    kind = raw["type"]
    if kind == "text":
        part = chat_pb2.ContentPart(text=raw["text"])
    elif kind == "image_url":
        image = raw["image_url"]
        if not image["url"].startswith(_IMAGE_SCHEMES):
            raise _invalid(f"{path}.image_url.url", "an image is an http(s) URL or a data: URL.")
        part = chat_pb2.ContentPart(
            image=chat_pb2.ImageContent(url=image["url"], detail=image.get("detail", ""))
        )
    elif kind == "input_audio":
        audio = raw["input_audio"]
        part = chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data=audio["data"], format=audio["format"]))
    elif kind == "file":
        file = raw["file"]
        if not file.get("file_data") and not file.get("file_id"):
            raise _invalid(f"{path}.file", "a file part needs file_data or file_id.")
        part = chat_pb2.ContentPart(
            file=chat_pb2.FileContent(
                file_id=file.get("file_id", ""),
                filename=file.get("filename", ""),
                file_data=file.get("file_data", ""),
            )
        )
    else:
        part = chat_pb2.ContentPart(refusal=raw["refusal"])
    _cache(part, raw, path)
    return part


def _content(message: chat_pb2.ChatMessage, content: Any, path: str) -> None:
    if isinstance(content, str):
        message.content = content
    elif content is not None:
        message.parts.extend(_part(part, f"{path}[{i}]") for i, part in enumerate(content))


def _assistant(message: chat_pb2.ChatMessage, raw: Mapping[str, Any], path: str) -> None:
    if raw.get("refusal") is not None:
        message.refusal = raw["refusal"]
    if (audio := raw.get("audio")) is not None:
        message.audio_id = audio["id"]
    for call in raw.get("tool_calls") or ():
        if call["type"] == "custom":
            custom = call["custom"]
            message.tool_calls.add(
                id=call["id"], type="custom", function_name=custom["name"], arguments=custom["input"]
            )
        else:
            function = call["function"]
            message.tool_calls.add(
                id=call["id"],
                type="function",
                function_name=function["name"],
                arguments=function["arguments"],
            )
    if (legacy := raw.get("function_call")) is not None:
        if message.tool_calls:
            raise _invalid(f"{path}.function_call", "give tool_calls or function_call, not both.")
        message.tool_calls.add(
            id="call_" + legacy["name"],
            type="function",
            function_name=legacy["name"],
            arguments=legacy["arguments"],
        )
    if raw.get("content") is None and not (message.tool_calls or message.refusal or message.audio_id):
        raise _invalid(f"{path}.content", "an assistant message needs content, tool_calls, refusal or audio.")


def _message(index: int, raw: Mapping[str, Any]) -> chat_pb2.ChatMessage:
    path = f"messages[{index}]"
    role = raw["role"]
    if role == "function":
        # The legacy function result: a tool result for the call named after the function (_assistant).
        message = chat_pb2.ChatMessage(role="tool", tool_call_id="call_" + raw["name"], name=raw["name"])
        _content(message, raw.get("content") or "", f"{path}.content")
        return message
    message = chat_pb2.ChatMessage(role=role)
    _content(message, raw.get("content"), f"{path}.content")
    if name := raw.get("name"):
        message.name = name
    if role == "tool":
        message.tool_call_id = raw["tool_call_id"]
    elif role == "assistant":
        _assistant(message, raw, path)
    return message


def _function_tool(tool: chat_pb2.Tool, function: Mapping[str, Any]) -> None:
    tool.type = "function"
    tool.name = function["name"]
    tool.description = function.get("description", "")
    if (parameters := function.get("parameters")) is not None:
        tool.parameters_json = dump(parameters)
    if (strict := function.get("strict")) is not None:
        tool.strict = strict


def _tools(params: chat_pb2.GenerationParams, body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    functions = body.get("functions")
    if tools and functions:
        raise _invalid("functions", "give tools or functions, not both.")
    for i, raw in enumerate(tools or ()):
        tool = params.tools.add()
        if raw["type"] == "custom":
            custom = raw["custom"]
            tool.type = "custom"
            tool.name = custom["name"]
            tool.description = custom.get("description", "")
            if (fmt := custom.get("format")) is not None:
                tool.format_json = dump(fmt)
        else:
            _function_tool(tool, raw["function"])
        _cache(tool, raw, f"tools[{i}]")
    for raw in functions or ():
        _function_tool(params.tools.add(), raw)


def _tool_choice(params: chat_pb2.GenerationParams, body: Mapping[str, Any]) -> None:
    choice = body.get("tool_choice")
    legacy = body.get("function_call")
    if choice is not None and legacy is not None:
        raise _invalid("function_call", "give tool_choice or function_call, not both.")
    key = "tool_choice" if choice is not None else "function_call"
    choice = choice if choice is not None else legacy
    if choice is None:
        return
    if not params.tools:
        raise _invalid(key, f"'{key}' is only allowed when tools or functions are given.")
    out = params.tool_choice
    if isinstance(choice, str):
        out.mode = choice
    elif key == "function_call":
        out.mode, out.name = "function", choice["name"]
    elif choice["type"] == "allowed_tools":
        allowed = choice["allowed_tools"]
        out.mode, out.allowed_mode = "allowed_tools", allowed["mode"]
        for i, tool in enumerate(allowed["tools"]):
            named = tool.get(tool.get("type", ""))
            if not isinstance(named, dict) or not isinstance(named.get("name"), str):
                raise _invalid(f"tool_choice.allowed_tools.tools[{i}]", "name a function or custom tool.")
            out.allowed.append(named["name"])
    else:
        out.mode, out.name = "function", choice[choice["type"]]["name"]
    names = {tool.name for tool in params.tools}
    for name in (out.name, *out.allowed):
        if name and name not in names:
            raise _invalid(key, f"no tool named {name!r} was given.")


def _response_format(params: chat_pb2.GenerationParams, raw: Mapping[str, Any] | None) -> None:
    if raw is None:
        return
    out = params.response_format
    out.type = raw["type"]
    if (schema := raw.get("json_schema")) is not None:
        out.name = schema["name"]
        out.description = schema.get("description", "")
        if schema.get("schema") is not None:
            out.schema_json = dump(schema["schema"])
        if schema.get("strict") is not None:
            out.strict = schema["strict"]


def _output(params: chat_pb2.GenerationParams, body: Mapping[str, Any]) -> None:
    """Modalities, audio output, prediction, logit bias and logprobs."""
    modalities = body.get("modalities") or ()
    audio = body.get("audio")
    if "audio" in modalities and audio is None:
        raise _invalid("audio", "modalities with audio need the audio parameter (voice and format).")
    if audio is not None and "audio" not in modalities:
        raise _invalid("modalities", "the audio parameter needs modalities to include audio.")
    params.modalities.extend(modalities)
    if audio is not None:
        voice = audio["voice"]
        params.audio.voice = voice if isinstance(voice, str) else voice["id"]
        params.audio.format = audio["format"]
    if (prediction := body.get("prediction")) is not None:
        _content_into_prediction(params.prediction, prediction["content"])
    for token, bias in (body.get("logit_bias") or {}).items():
        if not token.isdigit():
            raise _invalid(f"logit_bias.{token}", "keys are token ids (decimal integers).")
        params.logit_bias[token] = bias
    if (top := body.get("top_logprobs")) is not None:
        if not body.get("logprobs"):
            raise _invalid("top_logprobs", "top_logprobs needs logprobs to be true.")
        params.top_logprobs = top


def _content_into_prediction(prediction: chat_pb2.Prediction, content: Any) -> None:
    if isinstance(content, str):
        prediction.content = content
    else:
        prediction.parts.extend(_part(part, f"prediction.content[{i}]") for i, part in enumerate(content))


def _params(body: Mapping[str, Any], stream: bool) -> chat_pb2.GenerationParams:
    params = chat_pb2.GenerationParams()
    for name in _OPTIONAL:
        if (value := body.get(name)) is not None:
            setattr(params, name, value)
    for name in _TEXT:
        if value := body.get(name):
            setattr(params, name, value)
    max_tokens, max_completion = body.get("max_tokens"), body.get("max_completion_tokens")
    if max_tokens is not None and max_completion is not None:
        raise _invalid(
            "max_completion_tokens", "set either 'max_tokens' or 'max_completion_tokens', not both."
        )
    if (limit := max_completion if max_tokens is None else max_tokens) is not None:
        params.max_tokens = limit
        params.max_completion_tokens = max_completion is not None
    if (stop := body.get("stop")) is not None:
        params.stop.extend((stop,) if isinstance(stop, str) else stop)
    if _RARE.isdisjoint(body):
        # A plain request pays for none of the rarer parameters' checks.
        return params
    _tools(params, body)
    _tool_choice(params, body)
    if (parallel := body.get("parallel_tool_calls")) is not None:
        params.parallel_tool_calls = parallel
    _response_format(params, body.get("response_format"))
    if effort := body.get("reasoning_effort"):
        params.reasoning.effort = effort
    if metadata := body.get("metadata"):
        params.metadata.update(metadata)
    if (store := body.get("store")) is not None:
        params.store = store
    _output(params, body)
    for name in _OPENAI_OPTIONS:
        if (value := body.get(name)) is not None:
            params.openai_options[name] = dump(value)
    return params


def to_generate_request(body: Mapping[str, Any], *, stream: bool) -> adapters_pb2.GenerateRequest:
    """The Generate request for a validated chat request (chat_schema.ChatCompletionRequest); who sent
    it is stamped by the exchange. `stream` is separate: the WebSocket streams unless the body says no."""
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not stream:
            raise _invalid("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        if stream_options.get("include_obfuscation"):
            raise _invalid(
                "stream_options.include_obfuscation",
                "ATP does not pad stream events; set it to false or omit it.",
            )
    return adapters_pb2.GenerateRequest(
        model=body["model"],
        messages=[_message(i, m) for i, m in enumerate(body["messages"])],
        params=_params(body, stream),
        stream=stream,
        include_usage=bool(stream_options and stream_options.get("include_usage")),
    )
