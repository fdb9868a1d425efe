"""Size limits of the hand-written code: no module over 500 lines, no function over 60 (issue 16)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.source_parse import parse_source

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("services", "libs", "tools")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _hand_written_modules() -> list[Path]:
    """Every .py under the source roots except generated stubs (`*_pb2*.py`), tests and environments."""
    return sorted(
        path
        for base in SOURCE_ROOTS
        for path in (ROOT / base).rglob("*.py")
        if "_pb2" not in path.name
        and not {".venv", "__pycache__", "tests"} & set(path.relative_to(ROOT).parts)
        and not path.name.startswith("test_")
    )


def function_lengths(source: str) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from `def` to the function's last line, decorators excluded) of every
    function and method in `source`, nested ones included."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                yield name, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    return walk(parse_source(source), "")


def test_lengths_are_counted_from_def_to_last_line() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(59))
    source = (
        f"import functools\n\n\nclass A:\n    @functools.cache\n    def f(self):\n{body}        return 1\n"
    )
    assert dict(function_lengths(source)) == {"A.f": 61}


def test_no_module_or_function_over_the_limits() -> None:
    modules = _hand_written_modules()
    assert len(modules) > 100, "the walk found too few modules: is ROOT right?"
    too_long: list[str] = []
    for path in modules:
        relative = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{relative}: {lines} lines (at most {MAX_MODULE_LINES})")
        for name, length in function_lengths(source):
            if length > MAX_FUNCTION_LINES:
                too_long.append(f"{relative}: {name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    assert too_long == [], "split these:\n" + "\n".join(too_long)
