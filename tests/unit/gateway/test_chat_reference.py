"""ATP's chat request shapes held against the installed openai SDK's copy of OpenAI's reference.

A new SDK release that adds a parameter, a message field, a content part or a literal value fails here,
naming what ATP does not accept yet.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import typing_extensions
from openai.types.chat import completion_create_params

from atp_gateway.dialects.chat_schema import ChatCompletionRequest

# What ATP accepts beyond the reference, on purpose: Anthropic's cache hints (`cache_control`) on content
# parts and tools, so prompt caching works through the chat API, and the null annotations the SDKs echo
# back on assistant messages.
EXTENSIONS = {"messages.annotations"}
EXTENSION_KEYS = ("cache_control",)
_WRAPPERS = (typing.Required, typing.NotRequired, typing_extensions.Required, typing_extensions.NotRequired)


def _paths(t: Any, prefix: str, out: set[str], seen: frozenset[Any] = frozenset()) -> set[str]:
    """Every key path (and literal value, as path=value) reachable in a TypedDict tree."""
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated or origin in _WRAPPERS:
        return _paths(args[0], prefix, out, seen)
    if origin in (typing.Union, types.UnionType) or (origin is not None and origin not in (typing.Literal,)):
        for arg in args:
            _paths(arg, prefix, out, seen)
        return out
    if t is str:
        out.add(f"{prefix}:str")
        return out
    if origin is typing.Literal:
        out.update(f"{prefix}={value}" for value in args if isinstance(value, str))
        return out
    if isinstance(t, type) and typing_extensions.is_typeddict(t) and t not in seen:
        for key, value in typing_extensions.get_type_hints(t).items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            _paths(value, path, out, seen | {t})
    return out


def _reference() -> set[str]:
    paths: set[str] = set()
    _paths(completion_create_params.CompletionCreateParamsStreaming, "", paths)
    _paths(completion_create_params.CompletionCreateParamsNonStreaming, "", paths)
    # `model` is a string or a literal list of OpenAI's model names; ATP routes any name.
    return {p for p in paths if not p.startswith("model=")}


def test_every_reference_parameter_part_and_value_is_accepted() -> None:
    ours = _paths(ChatCompletionRequest, "", set())
    # A literal value is accepted where ATP takes any string (a voice name, say).
    missing = sorted(p for p in _reference() - ours if p.partition("=")[0] + ":str" not in ours)
    assert not missing, f"in OpenAI's reference but not accepted by ATP: {missing}"


def test_nothing_beyond_the_reference_but_the_listed_extensions() -> None:
    ours = _paths(ChatCompletionRequest, "", set())
    reference = _reference()
    extra = sorted(
        p
        for p in ours - reference - EXTENSIONS
        if not any(key in p.split(".") or f"{key}:str" in p for key in EXTENSION_KEYS)
        and not (p.endswith(":str") and p.partition(":")[0] in reference)
    )
    assert not extra, f"accepted by ATP but not in OpenAI's reference: {extra}"
