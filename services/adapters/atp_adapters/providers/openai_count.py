"""OpenAI's input token count (POST /responses/input_tokens) body from the Chat Completions body ATP sends."""

from __future__ import annotations

from typing import Any

__all__ = ["Untranslatable", "responses_count_body"]

# Chat's content parts as Responses input parts: the part's type, and its value's key in each.
_PARTS = {
    "text": "input_text",
    "image_url": "input_image",
    "input_audio": "input_audio",
    "file": "input_file",
}


class Untranslatable(ValueError):
    """Something of the request has no place in the count's body: counting without it would undercount."""


def _part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part["type"]
    if kind == "text":
        out: dict[str, Any] = {"type": "input_text", "text": part["text"]}
    elif kind == "image_url":
        out = {"type": "input_image", "image_url": part["image_url"]["url"]}
        out["detail"] = part["image_url"].get("detail", "auto")
    elif kind == "file":
        out = {"type": "input_file", **part["file"]}
    else:
        # Audio among them: a Responses input message takes text, images and files only.
        raise Untranslatable(f"{where}: a {kind} part")
    if "prompt_cache_breakpoint" in part:
        out["prompt_cache_breakpoint"] = part["prompt_cache_breakpoint"]
    return out


def _content(content: Any, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    return [_part(part, f"{where}[{i}]") for i, part in enumerate(content)]


def _assistant_text(content: Any, refusal: str | None) -> str:
    if isinstance(content, list):
        text = "".join(p.get("text") or p.get("refusal") or "" for p in content)
    else:
        text = content or ""
    return text + (refusal or "")


def _call(call: dict[str, Any]) -> dict[str, Any]:
    if call["type"] == "custom":
        custom = call["custom"]
        return {
            "type": "custom_tool_call",
            "call_id": call["id"],
            "name": custom["name"],
            "input": custom["input"],
        }
    function = call["function"]
    return {
        "type": "function_call",
        "call_id": call["id"],
        "name": function["name"],
        "arguments": function["arguments"],
    }


def _items(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    where = f"messages[{index}]"
    for field in ("name", "audio"):
        if field in message:
            raise Untranslatable(f"{where}.{field}")
    role = message["role"]
    if role == "tool":
        output = _content(message.get("content"), f"{where}.content")
        return [{"type": "function_call_output", "call_id": message["tool_call_id"], "output": output}]
    if role != "assistant":
        return [
            {"type": "message", "role": role, "content": _content(message.get("content"), f"{where}.content")}
        ]
    items: list[dict[str, Any]] = []
    text = _assistant_text(message.get("content"), message.get("refusal"))
    if text:
        items.append({"type": "message", "role": "assistant", "content": text})
    items.extend(_call(call) for call in message.get("tool_calls") or ())
    return items


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool["type"] == "custom":
        custom = dict(tool["custom"])
        fmt = custom.get("format")
        if isinstance(fmt, dict) and "grammar" in fmt:
            # Chat nests a grammar's definition and syntax; Responses has them on the format itself.
            custom["format"] = {"type": "grammar", **fmt["grammar"]}
        return {"type": "custom", **custom}
    function = tool["function"]
    # Responses requires parameters and strict on every function tool (null when not given).
    return {"parameters": None, "strict": None, **function, "type": "function"}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    kind = choice["type"]
    if kind == "allowed_tools":
        allowed = choice["allowed_tools"]
        return {"type": kind, "mode": allowed["mode"], "tools": [_tool_choice(t) for t in allowed["tools"]]}
    return {"type": kind, "name": choice[kind]["name"]}


def _format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    return {"type": "json_schema", **fmt["json_schema"]}


def responses_count_body(chat: dict[str, Any]) -> dict[str, Any]:
    """The count's body: the model, the conversation as input items, and what shapes the input (tools,
    tool choice, reasoning, text format). Sampling and output limits change no input token: left out."""
    items = [item for i, message in enumerate(chat["messages"]) for item in _items(message, i)]
    body: dict[str, Any] = {"model": chat["model"], "input": items}
    if "tools" in chat:
        body["tools"] = [_tool(tool) for tool in chat["tools"]]
    if "tool_choice" in chat:
        body["tool_choice"] = _tool_choice(chat["tool_choice"])
    if "parallel_tool_calls" in chat:
        body["parallel_tool_calls"] = chat["parallel_tool_calls"]
    if "reasoning_effort" in chat:
        body["reasoning"] = {"effort": chat["reasoning_effort"]}
    text: dict[str, Any] = {}
    if "response_format" in chat:
        text["format"] = _format(chat["response_format"])
    if "verbosity" in chat:
        text["verbosity"] = chat["verbosity"]
    if text:
        body["text"] = text
    return body
