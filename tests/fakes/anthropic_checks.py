"""The request checks of the fake Messages API: what the real service answers 400 for."""

from __future__ import annotations

import json
import re
from typing import Any

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_BLOCKS = (
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
)
_MAX_CACHE_BREAKPOINTS = 4


class Invalid(ValueError):
    """A request the real service refuses; the message is what it would say."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(message)


def _cache(block: dict[str, Any], where: str) -> int:
    control = block.get("cache_control")
    if control is None:
        return 0
    _require(control.get("type") == "ephemeral", f"{where}.cache_control.type: must be ephemeral")
    _require(control.get("ttl", "5m") in ("5m", "1h"), f"{where}.cache_control.ttl: must be 5m or 1h")
    return 1


def _source(block: dict[str, Any], where: str) -> None:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        allowed = _IMAGE_TYPES if block["type"] == "image" else ("application/pdf",)
        _require(source.get("media_type") in allowed, f"{where}.source.media_type: not one of {allowed}")
        _require(bool(source.get("data")), f"{where}.source.data: Field required")
    elif kind == "url":
        _require(
            str(source.get("url", "")).startswith(("http://", "https://")), f"{where}.source.url: invalid"
        )
    elif kind == "text" and block["type"] == "document":
        _require(source.get("media_type") == "text/plain", f"{where}.source.media_type: must be text/plain")
        _require(isinstance(source.get("data"), str), f"{where}.source.data: Field required")
    elif kind == "content" and block["type"] == "document":
        content = source.get("content")
        if not isinstance(content, str):
            _text_blocks(content, f"{where}.source.content", ("text", "image"))
    else:
        raise Invalid(f"{where}.source.type: unknown source type {kind!r}")


# A text block's citation kinds and the integer fields each must carry (the SDK's TextCitationParam).
_CITATION_FIELDS = {
    "char_location": ("document_index", "start_char_index", "end_char_index"),
    "page_location": ("document_index", "start_page_number", "end_page_number"),
    "content_block_location": ("document_index", "start_block_index", "end_block_index"),
    "web_search_result_location": (),
    "search_result_location": ("search_result_index", "start_block_index", "end_block_index"),
}


def _citations(citations: Any, where: str) -> None:
    if citations is None:
        return
    _require(isinstance(citations, list), f"{where}.citations: must be a list")
    for k, citation in enumerate(citations):
        at = f"{where}.citations.{k}"
        _require(
            isinstance(citation, dict) and citation.get("type") in _CITATION_FIELDS, f"{at}.type: invalid"
        )
        _require(isinstance(citation.get("cited_text"), str), f"{at}.cited_text: Field required")
        for name in _CITATION_FIELDS[citation["type"]]:
            _require(type(citation.get(name)) is int, f"{at}.{name}: Field required")


def _text_blocks(blocks: Any, where: str, kinds: tuple[str, ...]) -> None:
    _require(isinstance(blocks, list) and bool(blocks), f"{where}: a non-empty list of blocks")
    for k, inner in enumerate(blocks):
        _require(
            isinstance(inner, dict) and inner.get("type") in kinds, f"{where}.{k}.type: not one of {kinds}"
        )
        if inner["type"] == "text":
            _require(isinstance(inner.get("text"), str) and inner["text"] != "", f"{where}.{k}: empty text")


def _block(block: dict[str, Any], where: str, role: str, tool_ids: set[str]) -> int:
    kind = block.get("type")
    _require(kind in _BLOCKS, f"{where}.type: unknown content block type {kind!r}")
    if kind == "text":
        _require(
            isinstance(block.get("text"), str) and block["text"] != "",
            f"{where}: text blocks must be non-empty",
        )
        _citations(block.get("citations"), where)
    elif kind in ("image", "document"):
        _require(role == "user", f"{where}: {kind} blocks are only allowed in user turns")
        _source(block, where)
    elif kind == "search_result":
        _require(role == "user", f"{where}: search_result blocks are only allowed in user turns")
        for key in ("source", "title"):
            _require(isinstance(block.get(key), str), f"{where}.{key}: Field required")
        _text_blocks(block.get("content"), f"{where}.content", ("text",))
    elif kind == "tool_use":
        _require(role == "assistant", f"{where}: tool_use blocks are only allowed in assistant turns")
        _require(isinstance(block.get("input"), dict), f"{where}.input: must be an object")
        _require(bool(block.get("id")) and bool(block.get("name")), f"{where}: tool_use needs id and name")
        _require(
            re.fullmatch(r"[a-zA-Z0-9_-]+", block["id"]) is not None,
            f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
        )
    elif kind == "tool_result":
        _require(role == "user", f"{where}: tool_result blocks are only allowed in user turns")
        _require(
            block.get("tool_use_id") in tool_ids,
            f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}. "
            "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
        )
        content = block.get("content", "")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                _require(
                    inner.get("type") in ("text", "image", "search_result", "document"),
                    f"{where}.content.{k}: text, image, search_result or document only",
                )
                _block(inner, f"{where}.content.{k}", "user", tool_ids)
    elif kind == "thinking":
        _require(role == "assistant", f"{where}: thinking blocks are only allowed in assistant turns")
        _require(bool(block.get("signature")), f"{where}.signature: Field required")
        _require("cache_control" not in block, f"{where}: thinking blocks cannot be cached")
    elif kind == "redacted_thinking":
        _require(bool(block.get("data")), f"{where}.data: Field required")
    return _cache(block, where)


def _messages(messages: Any) -> int:
    _require(isinstance(messages, list) and bool(messages), "messages: at least one message is required")
    _require(messages[0].get("role") == "user", "messages.0.role: the first message must use the user role")
    breakpoints = 0
    tool_ids: set[str] = set()
    previous = ""
    for i, message in enumerate(messages):
        role = message.get("role")
        _require(role in ("user", "assistant"), f"messages.{i}.role: must be user or assistant")
        _require(role != previous, f"messages.{i}: roles must alternate between user and assistant")
        previous = role
        content = message.get("content")
        if isinstance(content, str):
            _require(content != "", f"messages.{i}.content: must be non-empty")
            _require(
                not tool_ids or role != "user",
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after",
            )
            tool_ids = set()
            continue
        _require(isinstance(content, list) and bool(content), f"messages.{i}.content: must be non-empty")
        for j, block in enumerate(content):
            breakpoints += _block(block, f"messages.{i}.content.{j}", role, tool_ids)
        kinds = [b.get("type") for b in content]
        results = kinds.count("tool_result")
        _require(
            kinds[:results] == ["tool_result"] * results,
            f"messages.{i}: tool_result blocks must come first in the user message's content",
        )
        answered = {b.get("tool_use_id") for b in content if b.get("type") == "tool_result"}
        _require(
            not tool_ids - answered or role != "user",
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after",
        )
        tool_ids = {b["id"] for b in content if b.get("type") == "tool_use"}
    return breakpoints


_EFFORTS = (None, "low", "medium", "high", "xhigh", "max")


def _thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type")
    _require(kind in ("enabled", "disabled", "adaptive"), f"thinking.type: unknown {kind!r}")
    if kind == "adaptive":
        _require(set(thinking) <= {"type", "display"}, "thinking: adaptive takes type and display only")
        _require(
            thinking.get("display", "summarized") in ("summarized", "omitted"), "thinking.display: invalid"
        )
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        _require(isinstance(budget, int) and budget >= 1024, "thinking.budget_tokens: must be at least 1024")
        _require(budget < body["max_tokens"], "`max_tokens` must be greater than `thinking.budget_tokens`")
        _require(
            thinking.get("display", "summarized") in ("summarized", "omitted"), "thinking.display: invalid"
        )
        _require(body.get("temperature", 1) == 1, "temperature may only be set to 1 when thinking is enabled")
        _require("top_k" not in body, "top_k is not compatible with thinking")
        forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
        _require(not forced, "Thinking may not be enabled when tool_choice forces tool use.")


def _options(body: dict[str, Any]) -> int:
    breakpoints = _cache(body, "cache_control") if "cache_control" in body else 0
    system = body.get("system")
    if system is not None:
        _require(isinstance(system, str | list) and bool(system), "system: must be non-empty")
        for k, block in enumerate(system if isinstance(system, list) else ()):
            _require(block.get("type") == "text" and bool(block.get("text")), f"system.{k}: non-empty text")
            breakpoints += _cache(block, f"system.{k}")
    for k, tool in enumerate(body.get("tools") or ()):
        _require(bool(tool.get("name")), f"tools.{k}.name: Field required")
        _require(isinstance(tool.get("input_schema"), dict), f"tools.{k}.input_schema: Field required")
        breakpoints += _cache(tool, f"tools.{k}")
    choice = body.get("tool_choice")
    if choice is not None:
        _require(choice.get("type") in ("auto", "any", "tool", "none"), "tool_choice.type: invalid")
        _require(choice["type"] != "tool" or bool(choice.get("name")), "tool_choice.name: Field required")
    _require(body.get("service_tier", "auto") in ("auto", "standard_only"), "service_tier: invalid")
    for stop in body.get("stop_sequences") or ():
        _require(bool(stop), "stop_sequences: each stop sequence must be non-empty")
        _require(bool(stop.strip()), "stop_sequences: each stop sequence must contain non-whitespace")
    # Claude's newer models (Sonnet and Haiku 4.5 on; the fake's "new" models) take one of the two.
    _require(
        "new" not in body["model"] or "temperature" not in body or "top_p" not in body,
        "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
    )
    temperature = body.get("temperature", 1)
    _require(isinstance(temperature, int | float) and 0 <= temperature <= 1, "temperature: range: 0..1")
    output = body.get("output_config")
    if output is not None:
        _require(set(output) <= {"format", "effort"}, "output_config: Extra inputs are not permitted")
        _require(output.get("effort") in _EFFORTS, "output_config.effort: invalid")
        if "format" in output:
            fmt = output["format"] or {}
            _require(fmt.get("type") == "json_schema", "output_config.format.type: must be json_schema")
            _require(isinstance(fmt.get("schema"), dict), "output_config.format.schema: Field required")
    metadata = body.get("metadata")
    if metadata is not None:
        _require(isinstance(metadata.get("user_id"), str), "metadata.user_id: must be a string")
    return breakpoints


def _tools_defined_for_tool_blocks(body: dict[str, Any]) -> None:
    tool_blocks = any(
        isinstance(m.get("content"), list)
        and any(b.get("type") in ("tool_use", "tool_result") for b in m["content"])
        for m in body["messages"]
    )
    _require(
        bool(body.get("tools")) or not tool_blocks,
        "Requests which include `tool_use` or `tool_result` blocks must define tools.",
    )


def check_messages_request(body: Any) -> None:
    """Raise Invalid for what the real Messages API refuses (a subset of its checks)."""
    _require(isinstance(body, dict), "the body must be a JSON object")
    _require(isinstance(body.get("model"), str) and bool(body["model"]), "model: Field required")
    max_tokens = body.get("max_tokens")
    _require(isinstance(max_tokens, int) and max_tokens >= 1, "max_tokens: Field required")
    breakpoints = _messages(body.get("messages")) + _options(body)
    _tools_defined_for_tool_blocks(body)
    _thinking(body)
    _require(
        breakpoints <= _MAX_CACHE_BREAKPOINTS,
        f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}.",
    )


# What count_tokens takes; anything else it refuses as an extra input.
COUNT_FIELDS = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "context_management",
)


def check_count_request(body: Any) -> None:
    """Raise Invalid for what the real count_tokens refuses: no max_tokens, stream or sampling."""
    _require(isinstance(body, dict), "the body must be a JSON object")
    for key in body:
        _require(key in COUNT_FIELDS, f"{key}: Extra inputs are not permitted")
    _require(isinstance(body.get("model"), str) and bool(body["model"]), "model: Field required")
    breakpoints = _messages(body.get("messages")) + _options(body)
    _tools_defined_for_tool_blocks(body)
    thinking = body.get("thinking")
    if thinking is not None:
        _require(thinking.get("type") in ("enabled", "disabled"), "thinking.type: invalid")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            _require(isinstance(budget, int) and budget >= 1024, "thinking.budget_tokens: at least 1024")
    _require(breakpoints <= _MAX_CACHE_BREAKPOINTS, "too many blocks with cache_control")


def counted_tokens(body: dict[str, Any]) -> int:
    """The fake's count: a quarter of the JSON of everything counted but the model (deterministic)."""
    return len(json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True)) // 4


CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
_EDITS = {
    "clear_thinking_20251015": "cleared_thinking_turns",
    "clear_tool_uses_20250919": "cleared_tool_uses",
}


def check_context_management(body: dict[str, Any], betas: str) -> list[dict[str, Any]]:
    """Raise Invalid as the real API does for context_management; the applied edits the fake reports
    (one of each edit asked for, one item and 42 tokens cleared)."""
    config = body.get("context_management")
    if config is None:
        return []
    _require(
        CONTEXT_MANAGEMENT_BETA in betas.split(","), "context_management: Extra inputs are not permitted"
    )
    _require(isinstance(config, dict) and set(config) <= {"edits"}, "context_management: invalid")
    applied = []
    for i, edit in enumerate(config.get("edits") or ()):
        kind = edit.get("type") if isinstance(edit, dict) else None
        _require(kind in _EDITS, f"context_management.edits.{i}.type: unknown edit type")
        if kind == "clear_thinking_20251015":
            thinking = (body.get("thinking") or {}).get("type")
            _require(
                thinking in ("enabled", "adaptive"),
                "`clear_thinking_20251015` strategy requires `thinking` to be enabled or adaptive",
            )
        applied.append({"type": kind, "cleared_input_tokens": 42, _EDITS[kind]: 1})
    return applied
