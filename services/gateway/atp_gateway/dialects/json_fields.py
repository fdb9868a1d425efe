"""Typed reads of a parsed JSON body that fail with a 400 naming the JSON path of the offending value."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from typing import Any

import orjson

from atp_common.errors import AtpError, InvalidArgument

__all__ = ["MESSAGE_SOURCES", "Obj", "Source", "at", "dialect_path", "dump", "parse_object", "rename_error"]

# Where an internal message came from in a dialect's body: the path of its turn or item, and what stands
# for `.content` in that path (`.content`, `.output`, "" for system blocks) or None when its parts do not
# map one to one.
Source = tuple[str, str | None]
# The current request's message sources, set by the dialect's parse (the exchange parses and reports
# errors in the request's own task), so an error about `messages[3].content[1]` from routing or a
# provider names the path the client sent.
MESSAGE_SOURCES: ContextVar[tuple[Source, ...]] = ContextVar("message_sources", default=())
_MESSAGE_PATH = re.compile(r"messages\[(\d+)\](.*)", re.DOTALL)
_HEAD = re.compile(r"[^.\[]*")


def rename_error(exc: AtpError, renames: Mapping[str, str]) -> AtpError:
    """`exc` with its param, and the param where its message names it, as the dialect body's path."""
    if exc.param:
        path = dialect_path(exc.param, renames)
        if path != exc.param:
            exc.message = re.sub(r"(?<![\w.\[])" + re.escape(exc.param) + r"(?![\w\[])", path, exc.message)
            exc.param = path
    return exc


def dialect_path(param: str, renames: Mapping[str, str]) -> str:
    """An internal request path (named by routing or a provider) as the dialect body's path: messages by
    MESSAGE_SOURCES, other fields by `renames` (internal top-level name to the dialect's path)."""
    match = _MESSAGE_PATH.fullmatch(param)
    if match is not None:
        sources = MESSAGE_SOURCES.get()
        index = int(match[1])
        if index >= len(sources):
            return param
        path, content = sources[index]
        rest = match[2]
        if content is not None and rest.startswith(".content"):
            return path + content + rest.removeprefix(".content")
        return path
    head = _HEAD.match(param)
    name = head[0] if head is not None else param
    return renames.get(name, param)


def at(path: str, key: str | int) -> str:
    """The JSON path of `key` inside `path` (`tools[0].name`)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def dump(value: Any) -> bytes:
    """JSON text of a pass-through value (a schema, a tool input)."""
    return orjson.dumps(value)


def parse_object(body: bytes) -> Obj:
    """The request body as an object; a 400 when it is not JSON or not an object."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidArgument(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    if not isinstance(value, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    return Obj(value, "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class Obj:
    """One JSON object and its path. Getters treat null like an absent key (as both APIs do for optional
    fields); `known` refuses keys nobody reads, so an unknown field is a 400, never ignored."""

    __slots__ = ("path", "value")

    def __init__(self, value: Mapping[str, Any], path: str):
        self.value = value
        self.path = path

    def __contains__(self, key: str) -> bool:
        return self.value.get(key) is not None

    def at(self, key: str | int) -> str:
        return at(self.path, key)

    def invalid(self, key: str | int, message: str) -> InvalidArgument:
        """A 400 about `key`, its path in the message and as the param."""
        path = self.at(key)
        return InvalidArgument(f"Invalid value for '{path}': {message}", param=path)

    def known(self, allowed: Collection[str], required: Collection[str] = ()) -> None:
        """Refuse unknown keys and missing required ones."""
        for key in self.value:
            if key not in allowed:
                path = self.at(key)
                raise InvalidArgument(f"Unknown parameter: '{path}'.", param=path)
        for key in required:
            if key not in self.value:
                path = self.at(key)
                raise InvalidArgument(f"Missing required parameter: '{path}'.", param=path)

    def _get(self, key: str, required: bool) -> Any:
        value = self.value.get(key)
        if value is None and required:
            path = self.at(key)
            raise InvalidArgument(f"Missing required parameter: '{path}'.", param=path)
        return value

    def text(
        self, key: str, *, required: bool = False, max_length: int = 0, choices: Collection[str] = ()
    ) -> str | None:
        """A string or None; with `choices`, one of them."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.invalid(key, f"expected a string, got {_kind(value)}.")
        if choices and value not in choices:
            raise self.invalid(key, f"expected one of {', '.join(repr(c) for c in choices)}.")
        if max_length and len(value) > max_length:
            raise self.invalid(key, f"longer than {max_length} characters.")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.value.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.invalid(key, f"expected a boolean, got {_kind(value)}.")
        return value

    def integer(self, key: str, *, low: int, high: int, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.invalid(key, f"expected an integer, got {_kind(value)}.")
        if not low <= value <= high:
            raise self.invalid(key, f"expected an integer from {low} to {high}.")
        return value

    def number(self, key: str, *, low: float, high: float) -> float | None:
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.invalid(key, f"expected a number, got {_kind(value)}.")
        if not low <= value <= high:
            raise self.invalid(key, f"expected a number from {low:g} to {high:g}.")
        return float(value)

    def object(self, key: str, *, required: bool = False) -> Obj | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.invalid(key, f"expected an object, got {_kind(value)}.")
        return Obj(value, self.at(key))

    def array(self, key: str, *, required: bool = False, max_items: int = 0, min_items: int = 0) -> Any:
        """A list or None."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.invalid(key, f"expected an array, got {_kind(value)}.")
        if max_items and len(value) > max_items:
            raise self.invalid(key, f"at most {max_items} items are allowed.")
        if len(value) < min_items:
            raise self.invalid(key, f"at least {min_items} item(s) are required.")
        return value

    def objects(self, key: str, **limits: Any) -> list[Obj]:
        """A list of objects (empty when absent)."""
        items = self.array(key, **limits) or []
        return [item_obj(item, self.at(key), i) for i, item in enumerate(items)]

    def strings(self, key: str, *, max_items: int = 0, max_length: int = 0) -> list[str]:
        items = self.array(key, max_items=max_items) or []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidArgument(
                    f"Invalid value for '{at(self.at(key), i)}': expected a string.",
                    param=at(self.at(key), i),
                )
            if max_length and len(item) > max_length:
                path = at(self.at(key), i)
                raise InvalidArgument(f"Invalid value for '{path}': too long.", param=path)
        return items

    def string_map(self, key: str, *, max_items: int, max_key: int, max_value: int) -> dict[str, str]:
        """An object of string values (OpenAI's metadata: 16 pairs, keys to 64, values to 512 characters)."""
        value = self.object(key)
        if value is None:
            return {}
        if len(value.value) > max_items:
            raise self.invalid(key, f"at most {max_items} pairs are allowed.")
        for name, item in value.value.items():
            if len(name) > max_key or not isinstance(item, str) or len(item) > max_value:
                raise value.invalid(name, f"expected a string of at most {max_value} characters.")
        return dict(value.value)


def item_obj(item: Any, path: str, index: int) -> Obj:
    """The `index`th item of the array at `path`, which must be an object."""
    if not isinstance(item, dict):
        where = at(path, index)
        raise InvalidArgument(
            f"Invalid value for '{where}': expected an object, got {_kind(item)}.", param=where
        )
    return Obj(item, at(path, index))
