"""Our typed request as an AWS Bedrock Converse body (the shapes of botocore's bedrock-runtime model)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.anthropic_encode import adaptive_thinking, anthropic_effort
from atp_adapters.providers.base import (
    ProviderRequest,
    claude_cache_ttl,
    claude_sampling,
    claude_tool_id,
    from_gemini,
    keyed_cache_hint,
    tool_description,
    unsupported,
)

_IMAGE_FORMATS = frozenset(("png", "jpeg", "gif", "webp"))
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_AUDIO_FORMATS = frozenset(("mp3", "wav", "flac", "ogg", "opus", "aac", "m4a", "webm", "pcm"))
# Bedrock allows letters, digits, single spaces, hyphens, parentheses and square brackets in names.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\-()\[\] ]+")
_SERVICE_TIERS = {"auto": "", "default": "default", "flex": "flex", "priority": "priority"}


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL, else None."""
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    media_type, _, encoding = header[5:].partition(";")
    if encoding != "base64" or not data:
        return None
    return media_type.lower(), data


def _image(provider: str, path: str, image: chat_pb2.ImageContent) -> dict[str, Any]:
    if image.url.startswith("s3://"):
        fmt = image.url.rsplit(".", 1)[-1].lower().replace("jpg", "jpeg")
        if fmt not in _IMAGE_FORMATS:
            raise unsupported(provider, path, "an s3:// image must end in .png, .jpeg, .gif or .webp")
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": image.url}}}}
    parsed = _data_url(image.url)
    if parsed is None:
        raise unsupported(provider, path, "Bedrock takes images as base64 data: URLs or s3:// URIs")
    media_type, data = parsed
    fmt = media_type.removeprefix("image/")
    if fmt not in _IMAGE_FORMATS:
        raise unsupported(provider, path, f"image type {media_type!r} (png, jpeg, gif or webp)")
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _document(provider: str, path: str, file: chat_pb2.FileContent, index: int) -> dict[str, Any]:
    name = _NAME_UNSAFE.sub(" ", file.filename or file.title or f"document {index}").strip()[:200]
    block: dict[str, Any] = {"name": name or f"document {index}"}
    if file.content:
        block["source"] = {"content": [{"text": text} for text in file.content]}
        return {"document": _document_options(block, file)}
    if file.url.startswith("s3://"):
        media_type = file.media_type
        block["source"] = {"s3Location": {"uri": file.url}}
    else:
        parsed = _data_url(file.file_data)
        if parsed is not None:
            media_type, data = parsed
        elif file.file_data and file.media_type:
            media_type, data = file.media_type, file.file_data
        else:
            raise unsupported(provider, path, "Bedrock takes documents as inline data or s3:// URIs")
        block["source"] = {"bytes": data}
    fmt = _DOCUMENT_FORMATS.get(media_type.lower())
    if fmt is None:
        raise unsupported(provider, path, f"document type {media_type!r}")
    block["format"] = fmt
    return {"document": _document_options(block, file)}


def _document_options(block: dict[str, Any], file: chat_pb2.FileContent) -> dict[str, Any]:
    if file.context:
        block["context"] = file.context
    if file.HasField("citations"):
        block["citations"] = {"enabled": file.citations}
    return block


def _search_result(found: chat_pb2.SearchResultContent) -> dict[str, Any]:
    block: dict[str, Any] = {
        "source": found.source,
        "title": found.title,
        "content": [{"text": text} for text in found.content],
    }
    if found.HasField("citations"):
        block["citations"] = {"enabled": found.citations}
    return {"searchResult": block}


def _audio(provider: str, path: str, audio: chat_pb2.AudioContent) -> dict[str, Any]:
    if audio.format not in _AUDIO_FORMATS:
        raise unsupported(provider, path, f"audio format {audio.format!r}")
    return {"audio": {"format": audio.format, "source": {"bytes": audio.data}}}


def _cache_point(provider: str, path: str, cache: chat_pb2.CacheControl) -> dict[str, Any]:
    point: dict[str, Any] = {"type": "default"}
    if cache.ttl:
        point["ttl"] = claude_cache_ttl(provider, path, cache.ttl)
    return {"cachePoint": point}


# Anthropic's citation kinds and the Converse location each one is: (location key, Converse's index
# field, Anthropic's index, start and end fields). Both directions read this one table: the encoder for
# citations sent back, bedrock.py for the citations of a reply.
CITATION_LOCATIONS: dict[str, tuple[str, str, str, str, str]] = {
    "char_location": (
        "documentChar",
        "documentIndex",
        "document_index",
        "start_char_index",
        "end_char_index",
    ),
    "page_location": (
        "documentPage",
        "documentIndex",
        "document_index",
        "start_page_number",
        "end_page_number",
    ),
    "content_block_location": (
        "documentChunk",
        "documentIndex",
        "document_index",
        "start_block_index",
        "end_block_index",
    ),
    "search_result_location": (
        "searchResultLocation",
        "searchResultIndex",
        "search_result_index",
        "start_block_index",
        "end_block_index",
    ),
}


def _cited_text(provider: str, path: str, part: chat_pb2.ContentPart) -> dict[str, Any]:
    """An earlier reply's text with its citations, as Converse's citationsContent block."""
    citations = []
    for k, citation in enumerate(orjson.loads(part.citations_json)):
        place = CITATION_LOCATIONS.get(citation.get("type"))
        if place is None:
            raise unsupported(
                provider, f"{path}.citations[{k}]", "Converse cites documents and search results"
            )
        key, index_field, index, start, end = place
        spot = {
            index_field: citation.get(index) or 0,
            "start": citation.get(start) or 0,
            "end": citation.get(end) or 0,
        }
        entry: dict[str, Any] = {
            "sourceContent": [{"text": citation.get("cited_text") or ""}],
            "location": {key: spot},
        }
        # A document citation names its document's title; a search result citation its title and source.
        if title := citation.get("document_title") or citation.get("title"):
            entry["title"] = title
        if citation.get("source"):
            entry["source"] = citation["source"]
        citations.append(entry)
    return {"citationsContent": {"content": [{"text": part.text}], "citations": citations}}


def _part(provider: str, path: str, part: chat_pb2.ContentPart, index: int) -> dict[str, Any]:
    kind = part.WhichOneof("kind")
    if kind == "text":
        return _cited_text(provider, path, part) if part.citations_json else {"text": part.text}
    if kind == "refusal":
        return {"text": part.refusal}
    if kind == "image":
        return _image(provider, path, part.image)
    if kind == "file":
        return _document(provider, path, part.file, index)
    if kind == "search_result":
        return _search_result(part.search_result)
    if kind == "audio":
        return _audio(provider, path, part.audio)
    if kind == "thinking":
        thinking = part.thinking
        if thinking.redacted_data:
            return {"reasoningContent": {"redactedContent": thinking.redacted_data}}
        text: dict[str, Any] = {"text": thinking.thinking}
        if thinking.signature:
            text["signature"] = thinking.signature
        return {"reasoningContent": {"reasoningText": text}}
    raise unsupported(provider, path, f"content part type {kind!r}")


def _blocks(provider: str, path: str, message: chat_pb2.ChatMessage) -> list[dict[str, Any]]:
    """A message's content as Converse blocks, a cachePoint after each part that asks for one."""
    if not message.parts:
        return [{"text": message.content}] if message.content else []
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(message.parts):
        if from_gemini(part):
            continue  # signed for Gemini: Claude would refuse the signature, other models have no use for it
        blocks.append(_part(provider, f"{path}.content[{i}]", part, i))
        if part.cache_control.type:
            blocks.append(_cache_point(provider, f"{path}.content[{i}].cache_control", part.cache_control))
    return blocks


def _tool_use(provider: str, path: str, call: chat_pb2.ToolCall) -> dict[str, Any]:
    if call.type not in ("", "function"):
        raise unsupported(provider, path, f"tool call type {call.type!r}")
    try:
        arguments = orjson.loads(call.arguments) if call.arguments else {}
    except orjson.JSONDecodeError as exc:
        raise unsupported(provider, f"{path}.function.arguments", "arguments are not JSON") from exc
    if not isinstance(arguments, dict):
        raise unsupported(provider, f"{path}.function.arguments", "arguments must be a JSON object")
    return {"toolUse": {"toolUseId": claude_tool_id(call.id), "name": call.function_name, "input": arguments}}


def _tool_result(provider: str, path: str, message: chat_pb2.ChatMessage) -> dict[str, Any]:
    content = _blocks(provider, path, message) or [{"text": ""}]
    result: dict[str, Any] = {"toolUseId": claude_tool_id(message.tool_call_id), "content": content}
    if message.is_error:
        result["status"] = "error"
    return {"toolResult": result}


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Converse wants user and assistant turns to alternate: consecutive turns of one role merge.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _conversation(
    provider: str, request: ProviderRequest
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        path = f"messages[{index}]"
        role = message.role
        if role in ("system", "developer"):
            blocks = _blocks(provider, path, message)
            if any(not ("text" in b or "cachePoint" in b) for b in blocks):
                raise unsupported(provider, path, "a system message may only hold text")
            system.extend(blocks)
        elif role == "tool":
            _append(messages, "user", [_tool_result(provider, path, message)])
        elif role == "assistant":
            blocks = _blocks(provider, path, message)
            if message.refusal:
                blocks.append({"text": message.refusal})
            for i, call in enumerate(message.tool_calls):
                blocks.append(_tool_use(provider, f"{path}.tool_calls[{i}]", call))
            if message.audio_id:
                raise unsupported(provider, f"{path}.audio", "an earlier audio reply")
            if blocks:  # none: a turn of Gemini's reasoning only, nothing another model can read
                _append(messages, "assistant", blocks)
        elif role == "user":
            _append(messages, "user", _blocks(provider, path, message))
        else:
            raise unsupported(provider, f"{path}.role", f"role {role!r}")
    return system, messages


def _tool_config(provider: str, params: chat_pb2.GenerationParams) -> dict[str, Any] | None:
    if not params.tools:
        return None
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(params.tools):
        if tool.type not in ("", "function"):
            raise unsupported(provider, f"tools[{i}].type", f"tool type {tool.type!r}")
        schema = orjson.loads(tool.parameters_json) if tool.parameters_json else {"type": "object"}
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": schema}}
        if description := tool_description(tool):
            spec["description"] = description
        if tool.HasField("strict"):
            spec["strict"] = tool.strict
        tools.append({"toolSpec": spec})
        if tool.cache_control.type:
            tools.append(_cache_point(provider, f"tools[{i}].cache_control", tool.cache_control))
    config: dict[str, Any] = {"tools": tools}
    choice = params.tool_choice
    if choice.mode in ("", "auto"):
        config["toolChoice"] = {"auto": {}}
    elif choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice.mode == "function":
        config["toolChoice"] = {"tool": {"name": choice.name}}
    else:
        raise unsupported(provider, "tool_choice", f"mode {choice.mode!r} (Bedrock: auto, required, a tool)")
    return config


def _output_config(provider: str, params: chat_pb2.GenerationParams, adaptive_model: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fmt = params.response_format
    if fmt.type == "json_schema":
        schema: dict[str, Any] = {"schema": fmt.schema_json.decode() or '{"type":"object"}'}
        schema["name"] = fmt.name or "response"
        if fmt.description:
            schema["description"] = fmt.description
        out["textFormat"] = {"type": "json_schema", "structure": {"jsonSchema": schema}}
    elif fmt.type == "json_object":
        # JSON mode is a schema that admits any object.
        structure = {"jsonSchema": {"schema": '{"type":"object"}', "name": "json_object"}}
        out["textFormat"] = {"type": "json_schema", "structure": structure}
    elif fmt.type not in ("", "text"):
        raise unsupported(provider, "response_format.type", f"type {fmt.type!r}")
    reasoning = params.reasoning
    if reasoning.effort and reasoning.effort != "none":
        out["effort"] = reasoning.effort
    elif effort := anthropic_effort(reasoning, adaptive_model):
        # A model that takes only adaptive thinking: a budget as its effort.
        out["effort"] = effort
    return out


def _additional_fields(
    provider: str, params: chat_pb2.GenerationParams, adaptive_model: bool
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    reasoning = params.reasoning
    if reasoning.disabled or reasoning.effort == "none":
        extra["thinking"] = {"type": "disabled"}
    elif (adaptive := adaptive_thinking(reasoning, adaptive_model)) is not None:
        extra["thinking"] = adaptive
    elif reasoning.HasField("budget_tokens"):
        extra["thinking"] = {"type": "enabled", "budget_tokens": reasoning.budget_tokens}
    if params.HasField("top_k"):
        extra["top_k"] = params.top_k
    return extra


def _refuse_unsupported(provider: str, params: chat_pb2.GenerationParams) -> None:
    """Parameters Converse has no place for; routing filters such candidates, this is the last guard."""
    checks = (
        ("seed", params.HasField("seed")),
        ("presence_penalty", params.HasField("presence_penalty")),
        ("frequency_penalty", params.HasField("frequency_penalty")),
        ("logprobs", params.HasField("logprobs") and params.logprobs),
        ("top_logprobs", params.HasField("top_logprobs")),
        ("n", params.HasField("n") and params.n > 1),
        ("logit_bias", bool(params.logit_bias)),
        ("prediction", params.HasField("prediction")),
        ("modalities", any(m != "text" for m in params.modalities)),
        ("audio", params.HasField("audio")),
        ("store", params.HasField("store") and params.store),
        ("parallel_tool_calls", params.HasField("parallel_tool_calls") and not params.parallel_tool_calls),
        # OpenAI's default verbosity is every model's by omission. (A prompt cache key is a cache point
        # for Claude, see _keyed_cache, and nothing for models that cache only where told.)
        ("verbosity", params.verbosity not in ("", "medium")),
    )
    for name, present in checks:
        if present:
            raise unsupported(provider, name)
    for name in params.openai_options:
        raise unsupported(provider, name)
    if params.service_tier not in _SERVICE_TIERS and params.service_tier:
        raise unsupported(provider, "service_tier", f"tier {params.service_tier!r}")


def _keyed_cache(request: ProviderRequest, messages: Any, system: Any) -> chat_pb2.CacheControl | None:
    """OpenAI's cache key as a request-wide hint for Claude on Bedrock when the request placed no cache
    point of its own (other models there cache only where told, if at all: they get nothing)."""
    params = request.params
    if "anthropic." not in request.provider_model or any(t.cache_control.type for t in params.tools):
        return None
    blocks = [*(system or ()), *(block for message in messages for block in message["content"])]
    return None if any("cachePoint" in block for block in blocks) else keyed_cache_hint(params)


def _sampling(request: ProviderRequest) -> dict[str, float]:
    """temperature and topP; Claude's by its rule (claude_sampling), since Claude refuses both at once.
    Other models get both as sent: their defaults differ (Llama's top_p is 0.9), so omitting is not
    the same request."""
    params = request.params
    if "anthropic." in request.provider_model:
        sampling = claude_sampling(params)
    else:
        sampling = {name: getattr(params, name) for name in ("temperature", "top_p") if params.HasField(name)}
    return {"topP" if name == "top_p" else name: value for name, value in sampling.items()}


def encode_bedrock(provider: str, request: ProviderRequest) -> bytes:
    """The Converse / ConverseStream body (the model id travels in the URL)."""
    params = request.params
    _refuse_unsupported(provider, params)
    system, messages = _conversation(provider, request)
    hint = params.cache_control if params.cache_control.type else _keyed_cache(request, messages, system)
    if hint is not None and messages:
        # A request-wide cache hint caches the whole prompt: a cache point after the last turn.
        messages[-1]["content"].append(_cache_point(provider, "cache_control", hint))
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    if params.HasField("max_tokens"):
        inference["maxTokens"] = params.max_tokens
    inference.update(_sampling(request))
    if params.stop:
        inference["stopSequences"] = list(params.stop)
    if inference:
        body["inferenceConfig"] = inference
    if (tool_config := _tool_config(provider, params)) is not None:
        body["toolConfig"] = tool_config
    if output := _output_config(provider, params, request.adaptive_thinking):
        body["outputConfig"] = output
    extra = _additional_fields(provider, params, request.adaptive_thinking)
    if "anthropic." in request.provider_model:
        # Claude on Bedrock takes Anthropic's betas and options in the body (model ids `anthropic.…`,
        # profiles `us.anthropic.…`); other models there have neither.
        if params.anthropic_betas:
            extra["anthropic_beta"] = list(params.anthropic_betas)
        if raw := params.anthropic_options.get("context_management"):
            # Speed and inference region are the Anthropic API's own (routing keeps them from Bedrock).
            extra["context_management"] = orjson.loads(raw)
    if extra:
        body["additionalModelRequestFields"] = extra
    if tier := _SERVICE_TIERS.get(params.service_tier, ""):
        body["serviceTier"] = {"type": tier}
    metadata = dict(params.metadata)
    for key, value in (("user", params.user), ("safety_identifier", params.safety_identifier)):
        if value:
            metadata[key] = value
    if metadata:
        # Converse's requestMetadata labels the call in the account's invocation logs.
        body["requestMetadata"] = metadata
    return orjson.dumps(body)
