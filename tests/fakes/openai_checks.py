"""What OpenAI's Chat Completions and input token count endpoints check of their bodies, by the SDK's types."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pydantic
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.responses.input_token_count_params import InputTokenCountParams

__all__ = ["Invalid", "check_chat_request", "check_input_tokens_request", "counted_openai_tokens"]


class Invalid(ValueError):
    """A body the real endpoint answers with 400 (with the parameter and code word, where OpenAI names them)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


@functools.cache
def _adapter(params: Any = InputTokenCountParams) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(params)


def _consume(value: Any) -> Any:
    # The SDK types its lists as Iterable, which pydantic checks only as they are read: read them all.
    if isinstance(value, dict):
        return {key: _consume(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "__next__"):
        return [_consume(item) for item in value]
    return value


def _check_typed(body: Any, params: Any, also: tuple[str, ...] = ()) -> None:
    """Raise Invalid for unknown top-level fields, or any field not of the SDK's own request types."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    for key in body:
        if key not in params.__annotations__ and key not in also:
            raise Invalid(f"Unrecognized request argument supplied: {key}")
    try:
        _consume(_adapter(params).validate_python(body))
    except pydantic.ValidationError as exc:
        raise Invalid(f"Invalid body: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def check_input_tokens_request(body: Any) -> None:
    """Raise Invalid for a body the count refuses (items, parts, tools, tool choice, text format)."""
    _check_typed(body, InputTokenCountParams)


# What OpenAI refuses beyond the types: (a field that needs another, the other, and when it is met).
_NEEDS: tuple[tuple[str, str, Any], ...] = (
    ("audio", "modalities", lambda body: "audio" in body["modalities"]),
    ("top_logprobs", "logprobs", lambda body: body["logprobs"] is True),
    ("tool_choice", "tools", bool),
    ("parallel_tool_calls", "tools", bool),
    ("stream_options", "stream", lambda body: body["stream"] is True),
)


def check_chat_request(body: Any) -> None:
    """Raise Invalid for a Chat Completions body OpenAI answers with 400: a field of the wrong type or
    value (an empty response format type, an audio format it does not know), or one whose companion is
    missing (audio output without the audio modality, top_logprobs without logprobs)."""
    _check_typed(body, CompletionCreateParamsBase, also=("stream",))
    for field, needed, met in _NEEDS:
        if field in body and not (needed in body and met(body)):
            raise Invalid(f"Invalid value for '{field}': it requires '{needed}'.")
    check_reasoning_model_sampling(body)
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise Invalid("Use either max_tokens or max_completion_tokens, not both.")
    for i, message in enumerate(body.get("messages") or ()):
        ids = [("tool_call_id", message.get("tool_call_id"))] + [
            (f"tool_calls[{k}].id", call.get("id")) for k, call in enumerate(message.get("tool_calls") or ())
        ]
        for where, value in ids:
            if isinstance(value, str) and len(value) > 40:
                raise Invalid(
                    f"Invalid 'messages[{i}].{where}': string too long. Expected a string with maximum "
                    f"length 40, but got a string with length {len(value)} instead."
                )


# OpenAI's reasoning models (o1, o3, o4-mini, ..., and the GPT-5 family) take only the default sampling.
_REASONING_MODEL = re.compile(r"o\d|gpt-5")
_DEFAULT_SAMPLING = {"temperature": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}
_NO_SAMPLING_OPTIONS = ("logprobs", "top_logprobs", "logit_bias")
# o3 and o4-mini refuse stop sequences too (o3-mini takes them).
_NO_STOP_MODEL = re.compile(r"o3(?!-mini)|o4-mini")


def check_reasoning_model_sampling(body: dict[str, Any]) -> None:
    """Raise Invalid, as OpenAI does, for sampling a reasoning model refuses."""
    if not _REASONING_MODEL.match(str(body.get("model", ""))):
        return
    for name, default in _DEFAULT_SAMPLING.items():
        if name in body and body[name] != default:
            raise Invalid(
                f"Unsupported value: '{name}' does not support {body[name]} with this model. "
                f"Only the default ({default}) value is supported.",
                name,
                "unsupported_value",
            )
    refused = [name for name in _NO_SAMPLING_OPTIONS if body.get(name)]
    if body.get("stop") and _NO_STOP_MODEL.match(str(body["model"])):
        refused.append("stop")
    if refused:
        message = f"Unsupported parameter: '{refused[0]}' is not supported with this model."
        raise Invalid(message, refused[0], "unsupported_parameter")


def counted_openai_tokens(body: dict[str, Any]) -> int:
    """The fake's count: a quarter of the JSON of everything counted but the model (deterministic)."""
    return len(json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True)) // 4
