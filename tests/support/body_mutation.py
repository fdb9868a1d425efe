"""Generated bad bodies for the dialect fuzz tests: a valid body with a few values replaced, removed or added."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def json_paths(value: Any, prefix: str = "") -> set[str]:
    """Every JSON path in `value`, in the notation the 400s use (`a.b[0].c`)."""
    paths = {prefix} if prefix else set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths |= json_paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths |= json_paths(item, f"{prefix}[{i}]")
    return paths


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one to three values replaced, keys removed or keys added, anywhere in the tree."""
    body = orjson.loads(orjson.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = body
        while True:
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
            if not containers or draw(st.booleans()):
                break
            node = draw(st.sampled_from(containers))[1]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(("replace", "remove", "add")))
        if action == "add" and isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
        elif keys and action == "remove":
            del node[draw(st.sampled_from(keys))]
        elif keys:
            node[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    return body
