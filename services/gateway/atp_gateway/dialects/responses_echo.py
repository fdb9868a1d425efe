"""The request parameters a Response repeats back (tools, tool_choice, text, reasoning, sampling)."""

from __future__ import annotations

from typing import Any

from atp_gateway.dialects.responses_request import RequestOptions

__all__ = ["echo_fields"]


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "custom":
        echoed = {"type": "custom", "name": tool["name"], "description": tool.get("description")}
        if tool.get("format") is not None:
            echoed["format"] = tool["format"]
        return echoed
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def echo_fields(options: RequestOptions) -> dict[str, Any]:
    """The Response fields that repeat the request, as OpenAI fills them."""
    body = options.body
    text = body.get("text") or {}
    reasoning = body.get("reasoning")
    return {
        "instructions": options.instructions,
        "metadata": options.metadata,
        "tools": [_tool(tool) for tool in options.tools],
        "tool_choice": options.tool_choice,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "top_logprobs": body.get("top_logprobs"),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
        if reasoning
        else None,
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity")},
        "truncation": "disabled",
        "background": False,
        "user": body.get("user"),
        "safety_identifier": body.get("safety_identifier"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
    }
