"""The typed internal request as a Gemini generateContent body; what Gemini cannot express is refused."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import (
    GEMINI_SIGNED,
    ProviderError,
    ProviderRequest,
    blank_text,
    from_gemini,
    tool_description,
    unsupported,
)

# What Gemini takes in place of a thought signature for a function call it did not sign.
UNSIGNED_CALL = "skip_thought_signature_validator"
# reasoning_effort as Gemini's thinkingLevel; xhigh asks for the most Gemini offers.
EFFORT_LEVELS = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "aac": "audio/aac"}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _data_url(url: str) -> tuple[str, str]:
    """(media type, base64 data) of a data: URL."""
    header, _, data = url.partition(",")
    return header[5:].split(";", 1)[0], data


def _tool_response(content: str, is_error: bool) -> dict[str, Any]:
    # Gemini reads a function's result under `output` and a failure under `error`; a JSON object result
    # is the response itself. Any other result stays the text it was ("42" is not the number 42).
    value: Any = content
    if content.lstrip().startswith("{"):
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(content)
    if isinstance(value, dict) and not is_error:
        return value
    return {"error" if is_error else "output": value}


def _thought(
    parts: list[dict[str, Any]], thinking: chat_pb2.ThinkingContent, pending: str, call: bool
) -> str:
    """Add Gemini's thought (with the signature `pending` from before it); the signature still to place.
    A signature-only part's goes on the next part. One a client merged into the thought text before the
    turn's calls (a Messages thinking block holds both) goes on the first call, where Gemini checks it."""
    signature = thinking.signature.removeprefix(GEMINI_SIGNED)
    if not thinking.thinking:
        return signature
    thought: dict[str, Any] = {"text": thinking.thinking, "thought": True}
    parts.append(thought)
    if pending:
        thought["thoughtSignature"] = pending
    if signature and call:
        return signature
    if signature:
        thought["thoughtSignature"] = signature
    return ""


class _Encoder:
    """One request's translation; `provider` names the provider in every refusal."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        # Tool call id -> function name: functionResponse parts are matched to calls by name.
        self.call_names: dict[str, str] = {}

    def refuse(self, path: str, why: str) -> ProviderError:
        return unsupported(self.provider, path, why)

    def image(self, image: chat_pb2.ImageContent, path: str) -> dict[str, Any]:
        if not image.url.startswith("data:"):
            # http(s) images are fetched and inlined by GeminiProvider before encoding.
            raise self.refuse(path, "Gemini takes images inline: an image must be a data: URL")
        media_type, data = _data_url(image.url)
        return {"inlineData": {"mimeType": media_type, "data": data}}

    def file(self, file: chat_pb2.FileContent, path: str) -> dict[str, Any]:
        if file.citations:
            raise self.refuse(path, "Gemini cannot cite documents")
        if file.content:
            raise self.refuse(path, "Gemini takes a document's data, not its text blocks")
        if file.file_data:
            data, media_type = file.file_data, file.media_type
            if data.startswith("data:"):
                embedded, data = _data_url(data)
                media_type = media_type or embedded
            if not media_type:
                raise self.refuse(path, "inline file data needs a media type")
            return {"inlineData": {"mimeType": media_type, "data": data}}
        if file.url:
            if not file.media_type:
                raise self.refuse(path, "a file URL needs a media type")
            return {"fileData": {"mimeType": file.media_type, "fileUri": file.url}}
        raise self.refuse(path, "a file id names a file uploaded to another provider")

    def part(self, part: chat_pb2.ContentPart, path: str, role: str) -> dict[str, Any]:
        kind = part.WhichOneof("kind")
        if kind == "text":
            if part.citations_json:
                raise self.refuse(f"{path}.citations", "Gemini cannot cite documents")
            return {"text": part.text}
        if kind == "image":
            return self.image(part.image, path)
        if kind == "audio":
            media_type = _AUDIO_TYPES.get(part.audio.format)
            if media_type is None:
                raise self.refuse(path, f"audio format {part.audio.format!r}")
            return {"inlineData": {"mimeType": media_type, "data": part.audio.data}}
        if kind == "file":
            return self.file(part.file, path)
        if kind == "refusal" and role == "assistant":
            return {"text": part.refusal}
        raise self.refuse(path, f"a {kind} part in a {role} message")

    def parts(self, message: chat_pb2.ChatMessage, path: str, role: str) -> list[dict[str, Any]]:
        if not message.parts:
            return [{"text": message.content}] if message.content else []
        # Gemini refuses an empty text part as a part with no data.
        kept = [(j, p) for j, p in enumerate(message.parts) if not blank_text(p)]
        return [self.part(p, f"{path}.content[{j}]", role) for j, p in kept]

    def tool_result(self, message: chat_pb2.ChatMessage, path: str) -> list[dict[str, Any]]:
        name = self.call_names.get(message.tool_call_id) or message.name
        if not name:
            raise self.refuse(f"{path}.tool_call_id", "a tool result whose call is not in the conversation")
        texts: list[str] = []
        extra: list[dict[str, Any]] = []
        for j, part in enumerate(message.parts):
            kind = part.WhichOneof("kind")
            if kind == "text":
                texts.append(part.text)
            elif kind == "image":
                extra.append(self.image(part.image, f"{path}.content[{j}]"))
            else:
                raise self.refuse(f"{path}.content[{j}]", "tool results take text and images")
        content = "".join(texts) if message.parts else message.content
        response = _tool_response(content, message.is_error)
        return [{"functionResponse": {"name": name, "response": response}}, *extra]

    def assistant(self, message: chat_pb2.ChatMessage, path: str) -> list[dict[str, Any]]:
        if message.audio_id:
            raise self.refuse(f"{path}.audio", "audio replies")
        # The decoder writes Gemini's thoughtSignature ahead of the part it came on, so a signature goes
        # back on the part that follows it, as Gemini sent it.
        parts: list[dict[str, Any]] = []
        signature = ""
        for j, item in enumerate(message.parts):
            if item.WhichOneof("kind") == "thinking":
                # Another model's reasoning is nothing Gemini can read.
                if from_gemini(item):
                    last = not any(p.WhichOneof("kind") != "thinking" for p in message.parts[j + 1 :])
                    signature = _thought(parts, item.thinking, signature, last and bool(message.tool_calls))
                continue
            parts.append(self.part(item, f"{path}.content[{j}]", "assistant"))
            if signature:
                parts[-1]["thoughtSignature"], signature = signature, ""
        if not message.parts and message.content:
            parts.append({"text": message.content})
        if message.refusal:
            parts.append({"text": message.refusal})
        calls = [self.function_call(c, f"{path}.tool_calls[{k}]") for k, c in enumerate(message.tool_calls)]
        if calls:
            # Gemini 3 refuses a turn's first call without its signature; a call another model made, or
            # whose signature the client did not keep (Chat Completions has no place for it), gets the
            # value Google documents for calls it did not sign.
            calls[0]["thoughtSignature"] = signature or UNSIGNED_CALL
        elif signature:
            parts.append({"text": "", "thought": True, "thoughtSignature": signature})
        return parts + calls

    def function_call(self, call: chat_pb2.ToolCall, path: str) -> dict[str, Any]:
        if call.type not in ("", "function"):
            raise self.refuse(path, f"{call.type} tool calls")
        try:
            args = orjson.loads(call.arguments) if call.arguments else {}
        except orjson.JSONDecodeError as exc:
            raise self.refuse(f"{path}.function.arguments", "arguments must be JSON") from exc
        self.call_names[call.id] = call.function_name
        return {"functionCall": {"name": call.function_name, "args": args}}

    def contents(self, messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(systemInstruction parts, contents). Consecutive messages of one role share a content."""
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            path, role = f"messages[{i}]", message.role
            if role in ("system", "developer"):
                for j, part in enumerate(message.parts):
                    if part.WhichOneof("kind") != "text":
                        raise self.refuse(f"{path}.content[{j}]", "system instructions take text only")
                system.extend(self.parts(message, path, role))
                continue
            if role == "tool":
                parts, turn_role = self.tool_result(message, path), "user"
            elif role == "assistant":
                parts, turn_role = self.assistant(message, path), "model"
            elif role == "user":
                parts, turn_role = self.parts(message, path, role), "user"
            else:
                raise self.refuse(f"{path}.role", f"role {role!r}")
            if role != "tool" and message.name:
                raise self.refuse(f"{path}.name", "Gemini has no participant names")
            if not parts and turn_role == "model":
                continue  # a turn of another model's reasoning only: nothing Gemini can read
            if contents and contents[-1]["role"] == turn_role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": turn_role, "parts": parts})
        return system, contents

    def tools(self, params: chat_pb2.GenerationParams) -> list[dict[str, Any]]:
        declarations = []
        for k, tool in enumerate(params.tools):
            if tool.type not in ("", "function"):
                raise self.refuse(f"tools[{k}]", f"{tool.type} tools")
            declaration: dict[str, Any] = {"name": tool.name}
            if description := tool_description(tool):
                declaration["description"] = description
            if tool.parameters_json:
                # JSON Schema as sent (parametersJsonSchema, unlike `parameters`, takes all of it).
                declaration["parametersJsonSchema"] = orjson.Fragment(tool.parameters_json)
            declarations.append(declaration)
        return [{"functionDeclarations": declarations}]

    def tool_config(self, choice: chat_pb2.ToolChoice) -> dict[str, Any] | None:
        if choice.mode in _TOOL_MODES:
            config: dict[str, Any] = {"mode": _TOOL_MODES[choice.mode]}
        elif choice.mode == "function":
            config = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
        elif choice.mode == "allowed_tools" and choice.allowed_mode == "required":
            config = {"mode": "ANY", "allowedFunctionNames": list(choice.allowed)}
        elif choice.mode:
            raise self.refuse("tool_choice", f"mode {choice.mode!r} ({choice.allowed_mode or 'auto'})")
        else:
            return None
        return {"functionCallingConfig": config}

    def thinking(self, reasoning: chat_pb2.Reasoning) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if reasoning.disabled or reasoning.effort == "none":
            config["thinkingBudget"] = 0
        elif reasoning.HasField("budget_tokens"):
            config["thinkingBudget"] = reasoning.budget_tokens
        elif reasoning.effort:
            if reasoning.effort not in EFFORT_LEVELS:
                raise self.refuse("reasoning_effort", f"effort {reasoning.effort!r}")
            config["thinkingLevel"] = EFFORT_LEVELS[reasoning.effort]
        elif reasoning.adaptive:
            config["thinkingBudget"] = -1  # dynamic: the model decides how much to think
        if reasoning.include_thoughts:
            config["includeThoughts"] = True
        return config


def _refuse_unexpressible(enc: _Encoder, params: chat_pb2.GenerationParams) -> None:
    """Parameters with no Gemini equivalent (routing filters such candidates; this is the backstop)."""
    present = [
        ("logit_bias", bool(params.logit_bias)),
        ("prediction", params.HasField("prediction")),
        ("modalities", any(m != "text" for m in params.modalities)),
        ("audio", params.HasField("audio")),
        # OpenAI's default verbosity is Gemini's by omission.
        ("verbosity", params.verbosity not in ("", "medium")),
        ("store", params.store),
        # Gemini serves every request at its one tier: `auto` and `default` ask for nothing else.
        ("service_tier", params.service_tier not in ("", "auto", "default")),
        ("parallel_tool_calls", params.HasField("parallel_tool_calls") and not params.parallel_tool_calls),
        # (A prompt cache key or retention needs nothing: Gemini caches repeated prefixes by itself.)
        *((name, True) for name in params.openai_options),
    ]
    for name, is_set in present:
        if is_set:
            raise enc.refuse(name, "no Gemini equivalent")


def _generation_config(enc: _Encoder, params: chat_pb2.GenerationParams) -> dict[str, Any]:
    config: dict[str, Any] = {}
    optional = (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("max_tokens", "maxOutputTokens"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    )
    for field, key in optional:
        if params.HasField(field):
            config[key] = getattr(params, field)
    if params.stop:
        config["stopSequences"] = list(params.stop)
    if params.logprobs or params.top_logprobs > 0:
        config["responseLogprobs"] = True
    if params.top_logprobs > 0:
        config["logprobs"] = params.top_logprobs
    fmt = params.response_format
    if fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.schema_json:
            config["responseJsonSchema"] = orjson.Fragment(fmt.schema_json)
    elif fmt.type not in ("", "text"):
        raise enc.refuse("response_format", f"type {fmt.type!r}")
    if params.HasField("reasoning"):
        thinking = enc.thinking(params.reasoning)
        if thinking:
            config["thinkingConfig"] = thinking
    return config


def encode_gemini(provider: str, request: ProviderRequest) -> bytes:
    """Our request as a generateContent body: system messages become systemInstruction, assistant turns
    role `model`, tool calls functionCall parts and tool results functionResponse parts. `user` and
    `safety_identifier` label the caller for OpenAI's abuse monitoring and cache hints ask for a cache
    Gemini keeps implicitly: neither changes the reply, and Gemini has no field for them."""
    enc = _Encoder(provider)
    params = request.params
    _refuse_unexpressible(enc, params)
    system, contents = enc.contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(enc, params)
    if config:
        body["generationConfig"] = config
    if params.tools:
        body["tools"] = enc.tools(params)
    if params.HasField("tool_choice"):
        tool_config = enc.tool_config(params.tool_choice)
        if tool_config is not None:
            body["toolConfig"] = tool_config
    return orjson.dumps(body)
