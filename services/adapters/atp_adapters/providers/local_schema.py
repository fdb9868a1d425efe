"""The local echo's answer to a JSON Schema: the smallest instance of the schema, the echo in its strings."""

from __future__ import annotations

from typing import Any

import orjson

# Recursive schemas (a tree node holding nodes) end in their smallest form past this depth.
_MAX_DEPTH = 8
# A schema with none of these says nothing about its instance's shape (`{}` takes anything).
_SHAPED = ("type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum", "const")


def schema_instance(schema_json: bytes, text: str) -> object | None:
    """An instance of the schema in `schema_json` with `text` in its strings; None when the schema is
    not a JSON object or has nothing to fill (the caller keeps its plain form then)."""
    try:
        schema = orjson.loads(schema_json) if schema_json else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(schema, dict) or not any(key in schema for key in _SHAPED):
        return None
    instance = _Filler(schema, text).fill(schema, 0)
    if instance == {} and schema.get("additionalProperties") is not False:
        return None
    return instance


def _choices(schema: dict[str, Any]) -> list[Any]:
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return options
    return []


class _Filler:
    """Walks one schema, resolving local `$ref`s against its root."""

    def __init__(self, root: dict[str, Any], text: str) -> None:
        self._root = root
        self._text = text

    def _resolve(self, ref: object) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node: Any = self._root
        for step in ref[1:].split("/")[1:]:
            step = step.replace("~1", "/").replace("~0", "~")
            node = node.get(step) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def fill(self, schema: Any, depth: int) -> object:
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            return self.fill(self._resolve(schema["$ref"]), depth + 1) if depth < _MAX_DEPTH else None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        options = _choices(schema)
        if options:
            # A nullable field (anyOf [X, null]) gets X: an echo that always answers null proves little.
            chosen = next(
                (o for o in options if not (isinstance(o, dict) and o.get("type") == "null")), options[0]
            )
            return self.fill(chosen, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        return self._typed(kind, schema, depth)

    def _typed(self, kind: object, schema: dict[str, Any], depth: int) -> object:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            count = schema.get("minItems", 0)
            count = count if isinstance(count, int) and 0 <= count <= 16 else 0
            if depth >= _MAX_DEPTH:
                return []
            return [self.fill(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self._string(schema)

    @staticmethod
    def _number(schema: dict[str, Any], integer: bool) -> int | float:
        value: int | float = 0
        for key, step in (("minimum", 0), ("exclusiveMinimum", 1)):
            bound = schema.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                value = bound + step
        top = schema.get("maximum")
        if isinstance(top, int | float) and not isinstance(top, bool) and value > top:
            value = top
        return int(value) if integer else value

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, object]:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or depth >= _MAX_DEPTH:
            return {}
        required = schema.get("required")
        names = [n for n in properties if n in required] if isinstance(required, list) else list(properties)
        return {name: self.fill(properties[name], depth + 1) for name in names}

    def _string(self, schema: dict[str, Any]) -> str:
        text = self._text
        longest = schema.get("maxLength")
        if isinstance(longest, int) and longest >= 0:
            text = text[:longest]
        shortest = schema.get("minLength")
        if isinstance(shortest, int) and 0 <= shortest <= 4096 and len(text) < shortest:
            text = text.ljust(shortest, ".")
        return text
