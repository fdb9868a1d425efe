"""The request checks of the fake Gemini API: what the real service answers 400 (INVALID_ARGUMENT) for."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED")


class Invalid(ValueError):
    """A request the real service refuses; the message is what it would say."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(message)


def _part(part: dict[str, Any], where: str) -> None:
    present = [f for f in _DATA_FIELDS if f in part]
    _require(len(present) == 1, f"{where}: a part must set exactly one data field, not {present}")
    if "inlineData" in part:
        blob = part["inlineData"]
        _require(bool(blob.get("mimeType")), f"{where}.inline_data.mime_type: required")
        try:
            base64.b64decode(blob.get("data") or "", validate=True)
        except binascii.Error as exc:
            raise Invalid(f"{where}.inline_data.data: invalid base64") from exc
        _require(bool(blob.get("data")), f"{where}.inline_data.data: required")
    elif "fileData" in part:
        _require(bool(part["fileData"].get("fileUri")), f"{where}.file_data.file_uri: required")
    elif "functionCall" in part:
        call = part["functionCall"]
        _require(bool(call.get("name")), f"{where}.function_call.name: required")
        _require(isinstance(call.get("args", {}), dict), f"{where}.function_call.args: must be an object")
    elif "functionResponse" in part:
        response = part["functionResponse"]
        _require(bool(response.get("name")), f"{where}.function_response.name: required")
        _require(isinstance(response.get("response"), dict), f"{where}.function_response.response: an object")


def _contents(contents: Any) -> None:
    _require(isinstance(contents, list) and bool(contents), "contents is not specified")
    for i, content in enumerate(contents):
        _require(content.get("role") in ("user", "model"), f"contents[{i}].role: must be user or model")
        parts = content.get("parts")
        _require(isinstance(parts, list) and bool(parts), f"contents[{i}].parts: must not be empty")
        for j, part in enumerate(parts):
            # An empty string is proto3's default: the part's data oneof reads as unset.
            _require(
                part != {"text": ""},
                f"contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field",
            )
            _part(part, f"contents[{i}].parts[{j}]")
    _signed_calls(contents)


def _signed_calls(contents: list[dict[str, Any]]) -> None:
    """Gemini 3's rule: in the current turn (since the last user text), each model step's first function
    call carries a thought signature."""
    start = max(
        (i for i, c in enumerate(contents) if c["role"] == "user" and any("text" in p for p in c["parts"])),
        default=0,
    )
    for i, content in enumerate(contents[start:], start):
        calls = [p for p in content["parts"] if "functionCall" in p] if content["role"] == "model" else []
        _require(
            not calls or "thoughtSignature" in calls[0],
            f"Function call is missing a thought_signature in functionCall parts (contents[{i}])",
        )


def _generation(config: dict[str, Any]) -> None:
    count = config.get("candidateCount", 1)
    _require(isinstance(count, int) and 1 <= count <= 8, "generation_config.candidate_count: 1 to 8")
    if "logprobs" in config:
        _require(config.get("responseLogprobs") is True, "logprobs requires response_logprobs to be true")
        _require(0 <= config["logprobs"] <= 20, "generation_config.logprobs: 0 to 20")
    if "responseJsonSchema" in config or "responseSchema" in config:
        _require(
            config.get("responseMimeType") == "application/json",
            "response_mime_type must be application/json with a response schema",
        )
    thinking = config.get("thinkingConfig") or {}
    _require(
        not ("thinkingBudget" in thinking and "thinkingLevel" in thinking),
        "thinking_budget and thinking_level cannot both be set",
    )
    _require(thinking.get("thinkingLevel", "LOW") in _LEVELS, "thinking_config.thinking_level: invalid")


def _tools(body: dict[str, Any]) -> None:
    for k, tool in enumerate(body.get("tools") or ()):
        for d, declaration in enumerate(tool.get("functionDeclarations") or ()):
            _require(bool(declaration.get("name")), f"tools[{k}].function_declarations[{d}].name: required")
            _require(
                not ("parameters" in declaration and "parametersJsonSchema" in declaration),
                "parameters and parameters_json_schema cannot both be set",
            )
    config = (body.get("toolConfig") or {}).get("functionCallingConfig")
    if config is not None:
        _require(config.get("mode", "AUTO") in _MODES, "tool_config.function_calling_config.mode: invalid")
        _require(
            "allowedFunctionNames" not in config or config.get("mode") == "ANY",
            "allowed_function_names is only allowed with mode ANY",
        )


def check_generate_request(body: Any) -> None:
    """Raise Invalid for what the real generateContent refuses (a subset of its checks)."""
    _require(isinstance(body, dict), "the body must be a JSON object")
    _contents(body.get("contents"))
    system = body.get("systemInstruction")
    if system is not None:
        parts = system.get("parts") or []
        _require(bool(parts), "system_instruction.parts: must not be empty")
        for j, part in enumerate(parts):
            _require(set(part) == {"text"}, f"system_instruction.parts[{j}]: text only")
    _generation(body.get("generationConfig") or {})
    _tools(body)


def check_embed_request(body: Any, model: str) -> None:
    """Raise Invalid for what the real batchEmbedContents refuses."""
    _require(isinstance(body, dict) and isinstance(body.get("requests"), list), "requests: required")
    _require(bool(body["requests"]), "requests: must not be empty")
    for i, request in enumerate(body["requests"]):
        _require(request.get("model") == f"models/{model}", f"requests[{i}].model: must be models/{model}")
        parts = (request.get("content") or {}).get("parts") or []
        _require(bool(parts) and all("text" in p for p in parts), f"requests[{i}].content: text parts")


_VERTEX_COUNT_FIELDS = frozenset(("contents", "systemInstruction", "tools", "generationConfig", "instances"))


def check_count_request(body: Any, model: str, *, wrapped: bool) -> dict[str, Any]:
    """Raise Invalid for what the real countTokens refuses; the generateContent request it counts.
    Google's API takes `contents` or a whole `generateContentRequest` naming the model (`wrapped`);
    Vertex's takes the request's fields at the top level."""
    _require(isinstance(body, dict), "the body must be a JSON object")
    if not wrapped:
        for key in body:
            _require(key in _VERTEX_COUNT_FIELDS, f'Invalid JSON payload received. Unknown name "{key}"')
        check_generate_request(body)
        return body
    for key in body:
        _require(key in ("contents", "generateContentRequest"), f'Invalid JSON payload. Unknown name "{key}"')
    _require(len(body) == 1, "countTokens takes contents or generateContentRequest, not both")
    inner = body.get("generateContentRequest") or {"contents": body.get("contents")}
    if "generateContentRequest" in body:
        _require(
            inner.get("model") == f"models/{model}", f"generateContentRequest.model: must be models/{model}"
        )
        inner = {k: v for k, v in inner.items() if k != "model"}
    check_generate_request(inner)
    return inner


def counted_gemini_tokens(request: dict[str, Any]) -> int:
    """The fake's count: a quarter of the JSON of the contents, system instruction and tools."""
    counted = {k: request.get(k) for k in ("contents", "systemInstruction", "tools")}
    return len(json.dumps(counted, sort_keys=True)) // 4
